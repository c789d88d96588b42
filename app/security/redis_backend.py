"""A Redis connection for the shared limiters, behind a circuit breaker (matching.resilience).

Every call either returns Redis's answer or ``None``; it never raises. On a Redis error the breaker
opens for ``retry_s`` seconds, during which calls return ``None`` at once (callers then use their
per-process state), so a dead Redis costs one short timeout, not one per request; then one probe
call is let through (half-open) and its success closes the breaker. Its state is exported as
``vop_circuit_breaker_state{breaker="redis_limits"}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from matching.resilience import CircuitBreaker

log = logging.getLogger("vop.security.redis")


class RedisBackend:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.05,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._retry_s = retry_s
        self.breaker = CircuitBreaker(
            "redis_limits", failure_threshold=1, reset_timeout=max(retry_s, 0.001), clock=clock
        )
        self.failures = 0
        self.healthy = True

    def script(self, lua: str) -> Script:
        return self._client.register_script(lua)

    def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        if not self.breaker.allow():
            return None
        try:
            result = script(keys=list(keys), args=list(args))
        except (redis.RedisError, OSError) as exc:
            self.failures += 1
            self.breaker.record_failure()
            if self.healthy:
                log.warning(
                    "Redis unavailable (%s); using per-process limits for %.0f s",
                    type(exc).__name__,
                    self._retry_s,
                )
            self.healthy = False
            return None
        self.breaker.record_success()
        if not self.healthy:
            log.info("Redis reachable again; shared limits resumed")
        self.healthy = True
        return result

    def close(self) -> None:
        self._client.close()
