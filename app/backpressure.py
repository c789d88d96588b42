"""Bounded work per worker: shed at once with 503 + Retry-After instead of queueing into a
latency cliff, and a deadline after which a request is answered with an error, not late."""

from __future__ import annotations

from app.problems import ProblemError


class LoadGate:
    """Counts checks in flight in this worker (a bulk request counts its size).

    The event loop is single-threaded, so plain integers are enough."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0

    def acquire(self, cost: int = 1) -> None:
        if self.in_flight + cost > self.max_in_flight and self.in_flight > 0:
            self.shed += 1
            raise ProblemError(
                "SERVICE_UNAVAILABLE", "responder is at capacity, retry shortly", 503, {"Retry-After": "1"}
            )
        self.in_flight += cost

    def release(self, cost: int = 1) -> None:
        self.in_flight -= cost


def deadline_exceeded(elapsed_s: float, deadline_s: float) -> ProblemError:
    return ProblemError(
        "SERVICE_UNAVAILABLE",
        f"request not answered within its {deadline_s * 1000:.0f} ms deadline ({elapsed_s * 1000:.0f} ms)",
        503,
        {"Retry-After": "1"},
    )
