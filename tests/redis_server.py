"""pytest fixtures: a private ``redis-server`` on a free port (never the machine's 6379).

``redis_server``: ``--save '' --appendonly no`` in a temp dir, yields a RedisServer (``.url``).
``restartable_redis``: the same with an fsync-always append-only file, so ``kill()`` (SIGKILL)
followed by ``start()`` on the same port brings the data back — for fault tests.

A missing ``redis-server`` binary FAILS the test with a clear message (``make redis-server``
installs it); these tests are never skipped.

Use: ``from tests.redis_server import redis_server, restartable_redis  # noqa: F401``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.netutil import free_port


class RedisServer:
    def __init__(self, workdir: Path, *, persistent: bool = False, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: run `make redis-server` "
                "(Debian package redis-server); the Redis tests need a real server",
                pytrace=False,
            )
        self.binary = binary
        self.workdir = workdir
        self.persistent = persistent
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.workdir),
        ]
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None:
                    pytest.fail(f"redis-server exited with {self.proc.returncode} on port {self.port}")
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server on port {self.port} did not answer PING")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.kill()
