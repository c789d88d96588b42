"""Where the index comes from: ``VOP_INDEX`` is a Parquet path or a Redis URL, and the Redis
follower's tunables come from ``VOP_INDEX_<FIELD>`` variables (e.g. ``VOP_INDEX_MAX_STALENESS_S``).
The defaults and their effects are in the README's "Index refresh" table."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from app.settings import Settings, struct_from_env
from matching.sources.redis_source import RedisIndexSource, RedisSourceSettings

REDIS_SCHEMES = ("redis://", "rediss://", "redis+sentinel://", "unix://")
ENV_PREFIX = "VOP_INDEX_"


def is_redis_url(index: str | None) -> bool:
    return bool(index) and str(index).startswith(REDIS_SCHEMES)


def redis_source_settings_from(env: Mapping[str, str], settings: Settings) -> RedisSourceSettings:
    feed = struct_from_env(RedisSourceSettings, env, ENV_PREFIX)
    if ENV_PREFIX + "CACHE_PATH" not in env and settings.index:
        # One cache per source; workers write it atomically (temp file + rename).
        digest = hashlib.sha256(f"{settings.index}|{settings.index_prefix}".encode()).hexdigest()[:12]
        feed = msgspec.structs.replace(
            feed, cache_path=str(Path(settings.data_dir) / f"index-cache-{digest}.parquet")
        )
    return feed


def redis_feed(env: Mapping[str, str], settings: Settings) -> RedisIndexSource:
    assert settings.index is not None
    return RedisIndexSource(settings.index, settings.index_prefix, redis_source_settings_from(env, settings))
