"""Deadlines for body reads that cannot carry a timer each: one sweep per event loop, not one timer
per request.

Under RSGI a Content-Length body arrives through one ``await protocol()``. An ``asyncio.timeout``
around it costs ~6 µs a request (bench/RESULTS.md), about 6 % of a check; without any deadline, a
client that sends part of a body and stalls would hold an in-flight slot for good. Here a read
registers its task and deadline (a dict insert), and a callback every ``SWEEP_S`` cancels the reads
that are past their deadline; the reader turns that cancellation into a 408.
"""

from __future__ import annotations

import asyncio

SWEEP_S = 0.1  # a late body is answered within its deadline plus this


class BodyDeadlines:
    def __init__(self) -> None:
        self._reads: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[object], deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        """From now until ``done(task)``, cancel ``task`` once ``loop.time()`` passes ``deadline``."""
        self._reads[task] = deadline
        if self._sweep_handle is None or self._loop is not loop:
            self._loop = loop
            self._sweep_handle = loop.call_later(SWEEP_S, self._sweep)

    def done(self, task: asyncio.Task[object]) -> None:
        self._reads.pop(task, None)

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether this task's cancellation was the deadline's (then it is not cancelled any more)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _sweep(self) -> None:
        loop = self._loop
        self._sweep_handle = None
        if loop is None:
            return
        now = loop.time()
        late = [task for task, deadline in self._reads.items() if deadline <= now]
        for task in late:
            del self._reads[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()
        if self._reads:
            self._sweep_handle = loop.call_later(SWEEP_S, self._sweep)
