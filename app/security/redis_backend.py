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
import redis.asyncio
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.retry import Retry

from matching.resilience import CircuitBreaker

log = logging.getLogger("vop.security.redis")
ASYNC_TIMEOUT_FLOOR_S = 0.25


class RedisBackend:
    """One Redis for the shared limits, with a blocking client (calls from a thread, or where the
    caller may wait) and an asyncio client (calls from the worker's event loop, made on first use
    there), behind one circuit breaker."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.05,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        self._url = url
        self._client: redis.Redis = redis.Redis.from_url(url, **self._options)
        # From the event loop a wait blocks nothing but its own request, and a loop busy for a moment
        # must not read as a dead Redis: those calls wait at least ASYNC_TIMEOUT_FLOOR_S.
        slack = max(timeout_s, ASYNC_TIMEOUT_FLOOR_S)
        self._async_options = {**self._options, "socket_timeout": slack, "socket_connect_timeout": slack}
        self._aclient: redis.asyncio.Redis | None = None
        self._retry_s = retry_s
        self.breaker = CircuitBreaker(
            "redis_limits", failure_threshold=1, reset_timeout=max(retry_s, 0.001), clock=clock
        )
        self.failures = 0
        self.healthy = True

    def script(self, lua: str) -> Script:
        return self._client.register_script(lua)

    def async_script(self, lua: str) -> AsyncScript:
        """``lua`` on the asyncio client (its connections belong to the loop that first uses them)."""
        if self._aclient is None:
            self._aclient = redis.asyncio.Redis.from_url(self._url, **self._async_options)
        return self._aclient.register_script(lua)

    async def warm_async(self, scripts: Sequence[AsyncScript]) -> None:
        """Connect the asyncio client and load ``scripts`` ahead of the first request (app start-up),
        so that a request's first call is one round trip. A failure is left to the first real call."""
        if self._aclient is None:
            return
        try:
            for script in scripts:
                await self._aclient.script_load(script.script)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            log.info("Redis not reached at start-up (%s); the first calls will try again", type(exc).__name__)

    def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        if not self.breaker.allow():
            return None
        try:
            result = script(keys=list(keys), args=list(args))
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._succeeded()
        return result

    async def run_async(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        """``run`` from the event loop: the loop serves others while Redis answers."""
        if not self.breaker.allow():
            return None
        try:
            result = await script(keys=list(keys), args=list(args))
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        self._succeeded()
        return result

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.breaker.record_failure()
        if self.healthy:
            name = type(exc).__name__
            log.warning("Redis unavailable (%s); using per-process limits for %.0f s", name, self._retry_s)
        self.healthy = False

    def _succeeded(self) -> None:
        self.breaker.record_success()
        if not self.healthy:
            log.info("Redis reachable again; shared limits resumed")
        self.healthy = True

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        """Close the asyncio client's connections, in the loop they belong to (``close`` closes the
        blocking client)."""
        if self._aclient is not None:
            client, self._aclient = self._aclient, None
            await client.aclose()
