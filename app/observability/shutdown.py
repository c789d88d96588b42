"""Graceful shutdown for ``vop serve`` on granian: readiness 503 first, then stop.

How granian stops (granian 2.x, ``granian/server/common.py`` and ``server/mp.py``):

1. The **main process** handles SIGINT/SIGTERM (``set_main_signals``): the handler only sets
   ``interrupt_signal`` and wakes the serve loop, which calls ``shutdown()`` → ``_stop_workers()``:
   ``Process.terminate()`` (SIGTERM) to every worker, then ``join`` (forever unless
   ``workers_kill_timeout`` is set; then SIGKILL after it).
2. Each **worker** has SIGINT/SIGTERM on its event loop (``set_loop_signals``): the Rust server stops
   accepting, finishes the requests it is serving and closes its connections, the worker's main
   coroutine returns, and only *then* the ASGI lifespan ``shutdown`` runs — Litestar's
   ``on_shutdown`` hooks see a server that no longer takes requests (the place to flush the audit
   trail and the metrics, and to stop exporters).

So a plain SIGTERM stops accepting at once: a load balancer still routing to the pod sees refused
or reset connections until its next readiness probe. :class:`DrainController` puts a drain window
in front, in the main process: on the first SIGTERM it writes the drain marker (every worker's
:class:`~app.observability.readiness.Readiness` then answers 503 on ``/readyz`` while still
serving everything else), waits ``VOP_DRAIN_SECONDS`` (default 5) so the load balancer takes the
pod out, and only then hands over to granian's own interrupt handler (steps 1-2). A second SIGTERM
(or SIGINT at any time) stops at once.

Wiring (``app/cli.py``)::

    runtime = prepare_runtime_dir()            # before prometheus_client is imported
    server = Granian(...)
    DrainController.from_env(runtime).attach(server)
    server.serve()
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol

from app.observability.runtime import DRAIN_MARKER, cleanup_runtime_dir

__all__ = ["DRAIN_ENV", "DrainController", "drain_seconds_from_env"]

log = logging.getLogger("vop.shutdown")
DRAIN_ENV: Final = "VOP_DRAIN_SECONDS"
DEFAULT_DRAIN_SECONDS: Final = 5.0


class GranianLike(Protocol):
    def on_startup(self, hook: Callable[[], Any]) -> Callable[[], Any]: ...
    def on_shutdown(self, hook: Callable[[], Any]) -> Callable[[], Any]: ...
    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None: ...


def drain_seconds_from_env(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(DRAIN_ENV, "").strip()
    if not raw:
        return DEFAULT_DRAIN_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{DRAIN_ENV} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{DRAIN_ENV} must not be negative")
    return value


class DrainController:
    """SIGTERM → drain marker → ``drain_seconds`` of normal service (``/readyz`` 503) → ``stop()``.

    ``stop`` is granian's ``signal_handler_interrupt`` once :meth:`attach` ran; tests inject one.
    ``sleep`` is injectable too; the wait runs in a daemon thread so the main thread stays free
    for a second signal."""

    def __init__(
        self,
        runtime_dir: Path,
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
        *,
        stop: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cleanup: bool = True,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.marker = runtime_dir / DRAIN_MARKER
        self.drain_seconds = drain_seconds
        self._stop = stop
        self._sleep = sleep
        self._cleanup = cleanup
        self._lock = threading.Lock()
        self._draining = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, runtime_dir: Path, env: Mapping[str, str] | None = None) -> DrainController:
        return cls(runtime_dir, drain_seconds_from_env(env))

    @property
    def draining(self) -> bool:
        return self._draining

    def attach(self, server: GranianLike) -> None:
        """Install on a granian server: the SIGTERM handler replaces granian's own right after
        granian sets it (startup hooks run after ``set_main_signals``, before workers spawn);
        the runtime folder goes when granian has stopped its workers."""
        self._stop = server.signal_handler_interrupt
        server.on_startup(self.install)
        if self._cleanup:
            server.on_shutdown(lambda: cleanup_runtime_dir(self.runtime_dir))

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._draining:
            log.warning("second SIGTERM while draining: stopping now")
            self._fire_stop()
            return
        self.begin_drain()

    def begin_drain(self) -> None:
        """Mark draining for every worker, then stop after the drain window (non-blocking)."""
        with self._lock:
            if self._draining:
                return
            self._draining = True
        try:
            self.marker.write_text(f"{time.time():.3f}\n")
        except OSError:
            log.exception("could not write the drain marker; stopping without a drain window")
            self._fire_stop()
            return
        log.info("SIGTERM: draining for %.1f s (readiness 503, still serving)", self.drain_seconds)
        self._thread = threading.Thread(target=self._wait_then_stop, name="vop-drain", daemon=True)
        self._thread.start()

    def _wait_then_stop(self) -> None:
        if self.drain_seconds > 0:
            self._sleep(self.drain_seconds)
        log.info("drain window over: stopping workers (in-flight requests finish first)")
        self._fire_stop()

    def _fire_stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._stop is not None:
            self._stop()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
