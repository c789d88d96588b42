"""The current index, swapped by one reference assignment; readiness and staleness follow it."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from matching.index import AccountIndex
from matching.memory import release_memory
from matching.overlay import IndexLike

log = logging.getLogger("vop.index")
StalePolicy = Literal["serve", "noap", "unready"]


class FeedStatus(Protocol):
    """What the app reads of a feed's status (the rest is shown to operators as is)."""

    @property
    def ready(self) -> bool: ...
    @property
    def stale(self) -> bool: ...
    @property
    def staleness_s(self) -> float | None: ...


class IndexFeed(Protocol):
    """A source that keeps handing new index versions to ``on_index`` (e.g. the Redis follower)."""

    def start(self, on_index: Callable[[IndexLike], None]) -> None: ...
    def stop(self, timeout: float | None = None) -> None: ...
    def status(self) -> Any: ...
    def request_reload(self) -> None: ...


class IndexHolder:
    """Holds the index a request reads. Readers take ``current`` once per batch, so a batch is
    always answered from one consistent index version even while a refresh swaps in the next."""

    STALE_CHECK_S = 0.1  # how often the hot path re-reads the feed's staleness

    def __init__(self, feed: IndexFeed | None = None) -> None:
        self._current: IndexLike | None = None
        self._error: str | None = None
        self._loader: threading.Thread | None = None
        self.feed = feed
        self._stale = False
        self._stale_checked = 0.0

    @property
    def current(self) -> IndexLike | None:
        return self._current

    @property
    def error(self) -> str | None:
        return self._error

    def swap(self, index: IndexLike) -> None:
        self._current = index
        self._error = None
        if isinstance(index, AccountIndex):  # a full build, not an overlay of a few changes
            # Hand the build's transient memory back, then move the objects that live as long as
            # the index out of the collector's generations (a full collection won't walk them).
            release_memory()
            gc.freeze()
            log.info(
                "index version %d ready: %d accounts from %s (built in %.2f s)",
                index.version, len(index), index.source, index.build_seconds,
            )  # fmt: skip
        else:
            log.debug("index version %d (overlay) swapped in", index.version)

    def stale(self) -> bool:
        """Whether the feed says the index is older than its maximum staleness (cached 100 ms)."""
        if self.feed is None:
            return False
        now = time.monotonic()
        if now - self._stale_checked >= self.STALE_CHECK_S:
            self._stale = bool(self.feed.status().stale)
            self._stale_checked = now
        return self._stale

    def load_in_background(self, load: Callable[[], AccountIndex]) -> None:
        """Run ``load`` in a thread so the server accepts liveness probes while it builds."""

        def run() -> None:
            try:
                self.swap(load())
            except Exception as exc:  # a broken snapshot must be visible on /readyz, not crash
                self._error = f"{type(exc).__name__}: {exc}"
                log.error("index load failed: %s", self._error)

        self._loader = threading.Thread(target=run, name="index-loader", daemon=True)
        self._loader.start()

    def wait(self, timeout: float | None = None) -> bool:
        if self._loader is not None:
            self._loader.join(timeout)
        return self._current is not None
