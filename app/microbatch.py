"""Micro-batching: concurrent single checks in one worker gathered into one vectorised batch.

A check waits at most ``window_s`` (or until ``max_size`` checks are pending) and the batch is
answered by one ``verify`` call against one index version. A window under 1 ms means "the checks
already decoded in this event-loop iteration": the flush is scheduled with ``call_soon``, so a lone
request waits for nothing (uvloop's timers have millisecond resolution, so this is also what a
sub-millisecond ``call_later`` did there). bench/RESULTS.md has the measurements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from matching.model import Check, Outcome


class MicroBatcher:
    def __init__(
        self,
        run: Callable[[Sequence[Check]], tuple[int, list[Outcome]]],
        window_s: float,
        max_size: int = 256,
    ) -> None:
        self._run = run
        self._window_s = window_s
        self._max_size = max_size
        self._pending: list[tuple[Check, asyncio.Future[tuple[int, Outcome]]]] = []
        self._timer: asyncio.Handle | None = None
        self.batches = 0
        self.batched_checks = 0

    async def submit(self, check: Check) -> tuple[int, Outcome]:
        """The check's outcome and the index version that answered it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, Outcome]] = loop.create_future()
        self._pending.append((check, future))
        if len(self._pending) >= self._max_size:
            self._flush()
        elif self._timer is None:
            if self._window_s < 0.001:
                self._timer = loop.call_soon(self._flush)
            else:
                self._timer = loop.call_later(self._window_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self.batches += 1
        self.batched_checks += len(batch)
        try:
            version, outcomes = self._run([check for check, _ in batch])
        except Exception as exc:  # every waiter gets the failure; none is left hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():  # the waiter may have been cancelled (client gone)
                future.set_result((version, outcome))
