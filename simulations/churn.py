"""Churn: how long peers stay online and offline (DESIGN.md §11).

Measurement studies of P2P networks (Stutzbach & Rejaie, IMC 2006, among others)
found heavy-tailed session times, better fitted by Weibull or Pareto than by the
exponential that textbook models assume; all three are offered with the mean as
the knob so that runs differ only in shape.

Schedules are drawn up front from one ``random.Random`` per peer, so a peer's
on/off times do not depend on how the scheduler interleaves other peers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio


class Distribution(Protocol):
    mean: float

    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class Exponential:
    mean: float

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)


@dataclass(frozen=True)
class Weibull:
    """Shape < 1 gives many short sessions and a few very long ones."""

    mean: float
    shape: float = 0.5

    def sample(self, rng: random.Random) -> float:
        scale = self.mean / math.gamma(1.0 + 1.0 / self.shape)
        return rng.weibullvariate(scale, self.shape)


@dataclass(frozen=True)
class Pareto:
    """Shape (alpha) must exceed 1 for the mean to exist; closer to 1 = heavier tail."""

    mean: float
    shape: float = 2.0

    def __post_init__(self) -> None:
        if self.shape <= 1.0:
            raise ValueError("a Pareto session model needs shape > 1 (otherwise its mean is infinite)")

    def sample(self, rng: random.Random) -> float:
        minimum = self.mean * (self.shape - 1.0) / self.shape
        return minimum * rng.paretovariate(self.shape)


def parse_distribution(text: str) -> Distribution:
    """``exp:600``, ``weibull:600:0.5`` or ``pareto:600:2`` (mean seconds[:shape])."""
    kind, _, rest = text.partition(":")
    parts = [float(p) for p in rest.split(":") if p]
    if not parts:
        raise ValueError(f"bad distribution {text!r}: write kind:mean[:shape], e.g. weibull:600:0.5")
    if kind in ("exp", "exponential"):
        return Exponential(parts[0])
    if kind == "weibull":
        return Weibull(*parts[:2])
    if kind == "pareto":
        return Pareto(*parts[:2])
    raise ValueError(f"unknown distribution {kind!r}: use exp, weibull or pareto")


@dataclass(frozen=True)
class ChurnModel:
    session: Distribution
    downtime: Distribution

    def schedule(
        self, rng: random.Random, horizon: float, *, start_online: bool | None = None
    ) -> list[tuple[float, float]]:
        """Online intervals ``[(start, end), ...]`` up to ``horizon`` seconds.

        By default a peer starts online with the steady-state probability
        session / (session + downtime), and its first interval is a residual
        draw, so the population is not synchronised at time zero.
        """
        if start_online is None:
            share = self.session.mean / (self.session.mean + self.downtime.mean)
            start_online = rng.random() < share
        intervals: list[tuple[float, float]] = []
        now = 0.0
        online = start_online
        # The first stretch is cut at a uniform point: a crude residual-life draw
        # that avoids every peer leaving at once when sessions are near-constant.
        first = True
        while now < horizon:
            length = (self.session if online else self.downtime).sample(rng)
            if first:
                length *= rng.random()
                first = False
            end = min(now + length, horizon)
            if online and end > now:
                intervals.append((now, end))
            now = end
            online = not online
        return intervals


async def run_churned(intervals: list[tuple[float, float]], run_online: Callable[[int], Awaitable[None]]) -> None:
    """Run ``run_online(session_index)`` inside each interval, cancelling it at the end.

    The callable should build a fresh peer each time (new endpoint listeners, same
    identity if the scenario wants a returning peer) and tear it down on cancel.
    """
    for index, (start, end) in enumerate(intervals):
        await trio.sleep_until(start)
        with trio.move_on_at(end):
            await run_online(index)
