"""Granian's ASGI target: ``app.asgi:app_from_env`` (factory) builds the app in each worker process
(``VOP_INTERFACE=asgi``; the RSGI target is ``app.rsgi:app_from_env``)."""

from __future__ import annotations

import logging
import os

from litestar import Litestar

from app.factory import create_app
from app.fastlane import FastLane, fast_lane
from app.index_config import is_redis_url, redis_feed
from app.observability.logging import configure_logging
from app.security.settings import security_settings_from
from app.settings import SettingsError, settings_from
from matching.index import AccountIndex
from matching.memory import tune_gc, use_system_allocator
from matching.sources.parquet import load_index


def build_from_env() -> Litestar:
    """The app of one worker process, from the VOP_* environment that ``vop serve`` sets."""
    settings = settings_from()
    configure_logging(settings.log_level)
    use_system_allocator()
    tune_gc()
    source = settings.index
    if not source:
        raise SettingsError("VOP_INDEX is not set (vop serve sets it to the demo snapshot)")
    security = security_settings_from()
    if is_redis_url(source):
        return create_app(settings, security=security, feed=redis_feed(os.environ, settings))
    if not source.endswith(".parquet"):
        raise SettingsError(f"VOP_INDEX must be a .parquet snapshot path or a Redis URL, got {source!r}")

    def load() -> AccountIndex:
        return load_index(source, progress=logging.getLogger("vop.index").info)

    return create_app(settings, loader=load, security=security)


def app_from_env() -> FastLane:
    return fast_lane(build_from_env())
