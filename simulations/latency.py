"""Per-pair latency models for the simulated network (DESIGN.md §11).

A pair's one-way delay is fixed for the whole run (never drawn per message): real
paths have a stable propagation delay, and per-message jitter would reorder bytes
that TCP delivers in order. Delays are rounded up to a binary grid (``TICK``) so
that virtual timestamps built from sums of delays stay exact in floating point —
this is what lets tests assert ``rtt == 2 * one_way`` with ``==``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Protocol

#: 2**-20 s (about 0.95 µs). Multiples of it add without rounding error for any
#: virtual time below 2**33 s, far past any run.
TICK = 2.0**-20


def quantize(seconds: float) -> float:
    """Round a delay up to the virtual-time grid (never down: a delay must not vanish)."""
    if seconds <= 0:
        return 0.0
    return math.ceil(seconds / TICK) * TICK


class LatencyModel(Protocol):
    def register(self, host: str, rng: random.Random) -> None:
        """Place a new host (position, region, access delay); called once per host."""
        ...

    def one_way(self, a: str, b: str) -> float:
        """One-way delay in seconds between two registered hosts; symmetric."""
        ...


class ConstantLatency:
    """Every pair has the same delay: the simplest baseline for protocol questions."""

    def __init__(self, seconds: float = 0.025) -> None:
        self.seconds = seconds

    def register(self, host: str, rng: random.Random) -> None:
        pass

    def one_way(self, a: str, b: str) -> float:
        return self.seconds


class CoordinateLatency:
    """Hosts at points of a unit square; delay grows with Euclidean distance.

    Network coordinate systems (Vivaldi and the like) embed measured Internet RTTs
    in a low-dimensional space with modest error, so a plane is a fair stand-in
    for a world of peers. ``max_one_way`` is reached across the diagonal.
    """

    def __init__(self, *, base: float = 0.002, max_one_way: float = 0.15) -> None:
        self.base = base
        self.per_unit = (max_one_way - base) / math.sqrt(2.0)
        self.positions: dict[str, tuple[float, float]] = {}

    def place(self, host: str, x: float, y: float) -> None:
        self.positions[host] = (x, y)

    def register(self, host: str, rng: random.Random) -> None:
        if host not in self.positions:
            self.positions[host] = (rng.random(), rng.random())

    def one_way(self, a: str, b: str) -> float:
        (ax, ay), (bx, by) = self.positions[a], self.positions[b]
        return self.base + math.hypot(ax - bx, ay - by) * self.per_unit


#: Illustrative one-way delays in seconds between broad regions: round numbers of
#: the right order for long-haul fibre, not measurements. Pass your own matrix for
#: anything that depends on the exact values.
DEFAULT_REGIONS: dict[str, dict[str, float]] = {
    "na-east": {"na-east": 0.005, "na-west": 0.035, "eu": 0.040, "asia": 0.090, "sa": 0.060, "oceania": 0.100},
    "na-west": {"na-west": 0.005, "eu": 0.070, "asia": 0.060, "sa": 0.085, "oceania": 0.075},
    "eu": {"eu": 0.005, "asia": 0.100, "sa": 0.095, "oceania": 0.140},
    "asia": {"asia": 0.010, "sa": 0.150, "oceania": 0.060},
    "sa": {"sa": 0.010, "oceania": 0.150},
    "oceania": {"oceania": 0.008},
}


class RegionLatency:
    """A region-to-region delay matrix plus a fixed per-host access delay.

    The access delay (drawn once per host, uniform in ``[0, access_max]``) stands
    for the last mile; without it every pair inside a region would tie exactly,
    which hides ordering effects that real networks have.
    """

    def __init__(
        self,
        matrix: Mapping[str, Mapping[str, float]] | None = None,
        *,
        weights: Mapping[str, float] | None = None,
        access_max: float = 0.002,
    ) -> None:
        matrix = matrix if matrix is not None else DEFAULT_REGIONS
        self.delays: dict[tuple[str, str], float] = {}
        for a, row in matrix.items():
            for b, delay in row.items():
                self.delays[(a, b)] = delay
                self.delays[(b, a)] = delay
        self.regions = sorted({a for a, _ in self.delays})
        missing = [(a, b) for a in self.regions for b in self.regions if (a, b) not in self.delays]
        if missing:
            raise ValueError(f"region matrix lacks delays for {missing[:3]}")
        self.weights = [float((weights or {}).get(r, 1.0)) for r in self.regions]
        self.access_max = access_max
        self.region_of: dict[str, str] = {}
        self.access: dict[str, float] = {}

    def assign(self, host: str, region: str, access: float = 0.0) -> None:
        if region not in self.regions:
            raise ValueError(f"unknown region {region!r}; known: {', '.join(self.regions)}")
        self.region_of[host] = region
        self.access[host] = access

    def register(self, host: str, rng: random.Random) -> None:
        if host not in self.region_of:
            region = rng.choices(self.regions, weights=self.weights)[0]
            self.assign(host, region, rng.uniform(0.0, self.access_max))

    def one_way(self, a: str, b: str) -> float:
        return self.delays[(self.region_of[a], self.region_of[b])] + self.access[a] + self.access[b]


def make_latency(kind: str, *, one_way_ms: float, access_ms: float = 2.0) -> LatencyModel:
    """The latency model a scenario knob names: ``constant``, ``coords`` or ``regions``.

    ``one_way_ms`` is the constant delay, or the largest one for ``coords``; the
    region matrix keeps its own values.
    """
    if kind == "constant":
        return ConstantLatency(one_way_ms / 1000.0)
    if kind == "coords":
        return CoordinateLatency(base=min(0.002, one_way_ms / 1000.0), max_one_way=one_way_ms / 1000.0)
    if kind == "regions":
        return RegionLatency(access_max=access_ms / 1000.0)
    raise ValueError(f"unknown latency model {kind!r}: use constant, coords or regions")
