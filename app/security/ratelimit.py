"""Per-client token bucket: ``rps`` tokens a second, at most ``burst`` saved up.

``acquire(client, cost)`` returns None (allowed, tokens taken) or the seconds until ``cost`` tokens would
be there (the caller answers 429 with ``Retry-After``). A request costing more than ``burst`` (a large
bulk check) is allowed once the bucket is full and leaves it in debt, so it cannot starve forever.

With Redis configured the bucket lives in Redis (one hash per client, updated by one Lua script, so
all workers and hosts share it atomically); whenever Redis fails the per-process bucket answers, and
the request is never failed because of the limiter. Per-process state is an LRU of at most
``max_clients`` buckets.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from redis.commands.core import AsyncScript

from app.security.redis_backend import RedisBackend

# The bucket for one or more acquisitions of one client at one moment, in order (a request, or a
# loop iteration's single checks, app.security.client_batch): ARGV[4 + i] is the i-th cost; one
# wait per cost.
BUCKET_MANY_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3]) -- microseconds since the epoch (exact in a double)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = (now - ts) / 1000000
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local out = {}
for i = 4, #ARGV do
  local cost = tonumber(ARGV[i])
  local need = math.min(cost, burst)
  local wait = 0
  if tokens + rate * 0.000001 + 0.000000001 >= need then
    tokens = tokens - cost
  else
    wait = math.max((need - tokens) / rate, 0.000001)
  end
  out[#out + 1] = string.format('%.6f', wait)
end
local stamp = string.format('%d', math.max(now, ts))
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens), 'ts', stamp)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst + math.max(0, -tokens)) / rate * 1000) + 1000)
return out
"""


# A request due within a microsecond is allowed: float noise in the refill must not refuse it.
_DUE_S = 1e-6


class LocalTokenBucket:
    def __init__(self, rps: float, burst: int, max_clients: int = 100_000) -> None:
        self.rps = rps
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def acquire(self, client: str, cost: float, now: float) -> float | None:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = [self.burst, now]
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        tokens, ts = bucket
        if now > ts:
            tokens = min(self.burst, tokens + (now - ts) * self.rps)
            ts = now
        need = min(cost, self.burst)
        if tokens + self.rps * _DUE_S + 1e-9 >= need:
            bucket[0] = tokens - cost
            bucket[1] = ts
            return None
        bucket[0] = tokens
        bucket[1] = ts
        return (need - tokens) / self.rps


class RateLimiter:
    """The limiter the gate uses: Redis-shared when configured, per process otherwise or on failure."""

    def __init__(
        self,
        rps: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        redis_backend: RedisBackend | None = None,
        prefix: str = "vop:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = rps > 0
        self._rps = rps
        self._burst = burst
        self._local = LocalTokenBucket(rps, burst, max_clients) if self.enabled else None
        self._redis = redis_backend
        self._many_script = redis_backend.script(BUCKET_MANY_LUA) if redis_backend else None
        self._many_script_async: AsyncScript | None = None  # made in the event loop, on first use
        self._prefix = prefix + "rl:"
        self._clock = clock
        self.limited = 0  # requests refused so far

    def acquire(self, client: str, cost: int = 1) -> float | None:
        if self._local is None:
            return None
        if self._redis is not None:
            return self.acquire_many(client, [cost])[0]
        wait = self._local.acquire(client, max(cost, 0), self._clock())
        if wait is not None:
            self.limited += 1
        return wait

    def acquire_many(self, client: str, costs: Sequence[int]) -> list[float | None]:
        """``acquire`` for each cost of one client at one moment, in order, as one Redis call."""
        if self._local is None or not costs:
            return [None] * len(costs)
        now = self._clock()
        answer = None
        if self._redis is not None and self._many_script is not None:
            answer = self._redis.run(self._many_script, [self._prefix + client], self._many_args(costs, now))
        return self._answered(client, costs, now, answer)

    async def acquire_many_async(self, client: str, costs: Sequence[int]) -> list[float | None]:
        """``acquire_many`` from the event loop: it serves others while Redis answers."""
        if self._local is None or not costs:
            return [None] * len(costs)
        now = self._clock()
        answer = None
        if self._redis is not None:
            keys = [self._prefix + client]
            answer = await self._redis.run_async(self.async_script(), keys, self._many_args(costs, now))
        return self._answered(client, costs, now, answer)

    def async_script(self) -> AsyncScript:
        """The batch script on the asyncio client (made on first use, in the event loop)."""
        assert self._redis is not None
        if self._many_script_async is None:
            self._many_script_async = self._redis.async_script(BUCKET_MANY_LUA)
        return self._many_script_async

    def _many_args(self, costs: Sequence[int], now: float) -> list[Any]:
        return [self._rps, self._burst, round(now * 1_000_000), *(max(c, 0) for c in costs)]

    def _answered(self, client: str, costs: Sequence[int], now: float, answer: Any) -> list[float | None]:
        """Redis's waits for the costs, or (no answer) the per-process bucket's."""
        waits: list[float | None]
        if answer is not None and len(answer) == len(costs):
            waits = [seconds if (seconds := float(a)) > 0 else None for a in answer]
        else:
            assert self._local is not None
            waits = [self._local.acquire(client, max(c, 0), now) for c in costs]
        self.limited += sum(w is not None for w in waits)
        return waits
