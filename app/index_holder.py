"""The current index, swapped by one reference assignment; readiness follows it."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

from matching.index import AccountIndex

log = logging.getLogger("vop.index")


class IndexHolder:
    """Holds the index a request reads. Readers take ``current`` once per batch, so a batch is
    always answered from one consistent index version even while a refresh swaps in the next."""

    def __init__(self) -> None:
        self._current: AccountIndex | None = None
        self._error: str | None = None
        self._loader: threading.Thread | None = None

    @property
    def current(self) -> AccountIndex | None:
        return self._current

    @property
    def error(self) -> str | None:
        return self._error

    def swap(self, index: AccountIndex) -> None:
        self._current = index
        self._error = None
        # The objects made while building live as long as the index: move them out of the
        # collector's generations so a full collection does not walk them on the hot path.
        gc.collect()
        gc.freeze()
        log.info(
            "index version %d ready: %d accounts from %s (built in %.2f s)",
            index.version,
            len(index),
            index.source,
            index.build_seconds,
        )

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
