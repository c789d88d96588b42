"""Progress for long work: a bar on a terminal, periodic log lines otherwise, a summary at the end."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class Progress:
    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, log_every_s: float = 5.0
    ) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every_s = log_every_s
        self.done = 0
        self.started = time.perf_counter()
        self._last = time.perf_counter() if not self.tty else 0.0

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int) -> None:
        self.done = min(done, self.total)
        now = time.perf_counter()
        if self.tty:
            if now - self._last >= 0.1 or self.done == self.total:
                width = 30
                filled = int(width * self.done / self.total)
                bar = "#" * filled + "-" * (width - filled)
                self.stream.write(f"\r{self.label} [{bar}] {self.done:,}/{self.total:,}")
                self.stream.flush()
                self._last = now
        elif now - self._last >= self.log_every_s:
            pct = 100 * self.done / self.total
            self.stream.write(f"{self.label}: {self.done:,}/{self.total:,} ({pct:.0f}%)\n")
            self.stream.flush()
            self._last = now

    def finish(self, summary: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        if self.tty:
            self.stream.write("\n")
        self.stream.write(
            f"{self.label}: done, {self.done:,} in {elapsed:.1f} s{'; ' + summary if summary else ''}\n"
        )
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            self.finish()
