"""Readiness: ``/readyz`` is 200 only when an index is loaded, it is within the staleness policy,
and the server is not draining.

Staleness policy (two thresholds, docs/operations.md):
- beyond ``stale_after_s`` the answer stays **200** but says ``"stale": true`` (and the metrics /
  alerts fire): every replica reads the same Redis, so turning all of them unready on a Redis
  outage would turn a degraded service into no service — DESIGN.md §5 wants the last good index
  to keep serving;
- beyond ``unready_after_s`` (off unless configured) the replica reports 503, for operators who
  prefer no answer to an answer from an index that old.

Draining: set in this process by :meth:`Readiness.mark_draining`, or for all workers at once by
the parent's drain marker file (``<VOP_RUNTIME_DIR>/draining``, see ``app.observability.shutdown``);
checking it costs one ``stat`` per ``/readyz`` call, nothing on the request path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec

from app.observability.metrics import IndexLike
from app.observability.runtime import drain_marker

__all__ = ["Readiness", "ReadinessReport"]

STATUS_READY: Final = "ready"


class ReadinessReport(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The ``/readyz`` body (camelCase on the wire) and its HTTP status."""

    status: str  #: ready | loading | failed | stale | draining
    http_status: int = msgspec.field(default=200, name="-")
    index_version: int | None = msgspec.field(default=None, name="indexVersion")
    accounts: int | None = None
    built_at: float | None = msgspec.field(default=None, name="builtAt")
    staleness_s: float | None = msgspec.field(default=None, name="stalenessSeconds")
    stale: bool = False
    draining: bool = False
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.http_status == 200

    def body(self) -> dict[str, Any]:
        """JSON-ready dict for the response (no ``http_status``)."""
        out = dict(msgspec.to_builtins(self))
        out.pop("-", None)
        # The flags are always present, so a client can read them without knowing the defaults.
        out["stale"] = self.stale
        out["draining"] = self.draining
        return out

    def headers(self) -> dict[str, str]:
        return {} if self.ready else {"Retry-After": "1"}


class Readiness:
    """Decides ``/readyz``. ``index`` returns the served index (``lambda: holder.current``),
    ``error`` the load error if loading failed, ``staleness`` the seconds since the index was last
    known to equal its source (``None``: not applicable, e.g. a Parquet snapshot)."""

    def __init__(
        self,
        index: Callable[[], IndexLike | None],
        *,
        error: Callable[[], str | None] | None = None,
        staleness: Callable[[], float | None] | None = None,
        stale_after_s: float = 30.0,
        unready_after_s: float | None = None,
        marker: Path | None = None,
        use_env_marker: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if unready_after_s is not None and unready_after_s < stale_after_s:
            raise ValueError("unready_after_s must not be below stale_after_s")
        self._index = index
        self._error = error or (lambda: None)
        self._staleness = staleness
        self.stale_after_s = stale_after_s
        self.unready_after_s = unready_after_s
        self._marker = marker if marker is not None else (drain_marker() if use_env_marker else None)
        self._draining_since: float | None = None
        self._clock = clock

    # ---- draining ---------------------------------------------------------------------------
    def mark_draining(self) -> None:
        if self._draining_since is None:
            self._draining_since = self._clock()

    @property
    def draining(self) -> bool:
        if self._draining_since is not None:
            return True
        if self._marker is not None and self._marker.exists():
            self._draining_since = self._clock()  # sticky: the marker is never withdrawn
            return True
        return False

    # ---- decision ---------------------------------------------------------------------------
    def check(self) -> ReadinessReport:
        draining = self.draining
        index = self._index()
        if index is None:
            err = self._error()
            return ReadinessReport(
                status="failed" if err else ("draining" if draining else "loading"),
                http_status=503,
                error=err,
                draining=draining,
            )
        staleness = self._staleness() if self._staleness is not None else None
        stale = staleness is not None and staleness > self.stale_after_s
        too_old = (
            staleness is not None and self.unready_after_s is not None and staleness > self.unready_after_s
        )
        status = "draining" if draining else ("stale" if too_old else STATUS_READY)
        return ReadinessReport(
            status=status,
            http_status=503 if draining or too_old else 200,
            index_version=index.version,
            accounts=len(index),
            built_at=index.built_at,
            staleness_s=None if staleness is None else round(staleness, 3),
            stale=stale,
            draining=draining,
        )

    def is_ready(self) -> bool:
        return self.check().ready
