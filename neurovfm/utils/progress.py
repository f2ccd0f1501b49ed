"""Progress for long loops: a log line every few seconds with count, rate and ETA.

Log lines (not a terminal bar) because most of our jobs run under SLURM, where stderr is a file.
"""

from __future__ import annotations

import logging
import os
import time


class Progress:
    def __init__(
        self,
        total: int | None,
        what: str,
        logger: logging.Logger | None = None,
        every_s: float = 10.0,
        unit: str = "items",
    ):
        self.total, self.what, self.unit = total, what, unit
        self.log = logger or logging.getLogger("neurovfm")
        self.every_s = every_s
        self.done = 0
        self.t0 = self.t_last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.t_last >= self.every_s:
            self.t_last = now
            self.log.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        rate = self.done / elapsed
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            return (
                f"{self.what}: {self.done}/{self.total} {self.unit} "
                f"({100 * self.done / self.total:.1f}%), {rate:.1f} {self.unit}/s, ETA {eta:.0f} s"
            )
        return f"{self.what}: {self.done} {self.unit}, {rate:.1f} {self.unit}/s"

    def close(self) -> None:
        self.log.info(self.line() + " (done)")


def setup_logging(log_file: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, when given, to a file (a Snakemake rule's ``log:``)."""
    logger = logging.getLogger("neurovfm")
    logger.setLevel(level)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = [logging.StreamHandler()]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    return logger
