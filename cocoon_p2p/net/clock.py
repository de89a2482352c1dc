"""Wall time through the seam.

Protocol timing uses trio's clock (``trio.current_time``/``trio.sleep``). Signed
records also need an absolute time that other peers agree on (expiry); that comes
from a ``WallClock`` so a simulation under ``MockClock`` stays deterministic.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio


class WallClock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class TrioWallClock:
    """Unix time that advances with trio's (possibly virtual) clock from ``epoch``."""

    def __init__(self, epoch: float = 1_800_000_000.0) -> None:
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + trio.current_time()
