"""Drive an ASGI app's lifespan (startup, shutdown) when the server speaks another interface.

granian runs the ASGI lifespan itself for an ASGI target; for an RSGI target it calls the app's
``__rsgi_init__(loop)`` before serving and ``__rsgi_del__(loop)`` after, with the loop not running.
``Lifespan`` sends the ASGI lifespan messages to the app from there, as an ASGI server would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.types import ASGIApp, Message

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}  # what these adapters speak


class LifespanError(RuntimeError):
    """The app reported ``lifespan.startup.failed`` / ``lifespan.shutdown.failed``, or died."""


class Lifespan:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.state: dict[str, Any] = {}  # ASGI lifespan state, copied into every request scope
        self._inbox: asyncio.Queue[Message] | None = None
        self._outbox: asyncio.Queue[Message] | None = None
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self._inbox, self._outbox = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(
            self._app(scope, self._inbox.get, self._outbox.put)  # type: ignore[arg-type]
        )
        await self._exchange("startup")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        try:
            await self._exchange("shutdown")
        finally:
            task, self._task = self._task, None
            if not task.done():
                task.cancel()

    async def _exchange(self, phase: str) -> None:
        """Send ``lifespan.<phase>`` and wait for the app's answer (or its end)."""
        assert self._inbox is not None
        assert self._outbox is not None
        assert self._task is not None
        await self._inbox.put({"type": f"lifespan.{phase}"})  # type: ignore[typeddict-item]
        reply = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait({reply, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            error = self._task.exception() if not self._task.cancelled() else None
            raise LifespanError(f"the app ended during lifespan {phase}: {error!r}")
        message = reply.result()
        if message["type"] == f"lifespan.{phase}.failed":
            raise LifespanError(f"lifespan {phase} failed: {message.get('message', '')}")
        if message["type"] != f"lifespan.{phase}.complete":
            raise LifespanError(f"unexpected lifespan message {message['type']!r}")
