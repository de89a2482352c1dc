"""Peer scores: what a peer's past behaviour earns it (DESIGN.md §6).

The score is local (never gossiped) and keyed by peer id, so it survives
reconnects: a graylisted peer cannot wash its record by dialling again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..identity import PeerId
from .config import ScoreParams

_FLOOR = 0.01  # counters below this decay to zero, so idle records can be dropped


@dataclass
class PeerRecord:
    first_deliveries: float = 0.0
    invalid: float = 0.0
    excess: float = 0.0
    behaviour: float = 0.0

    def is_empty(self) -> bool:
        return not (self.first_deliveries or self.invalid or self.excess or self.behaviour)


class Scoreboard:
    def __init__(self, params: ScoreParams) -> None:
        self.params = params
        self._records: dict[PeerId, PeerRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _rec(self, peer: PeerId) -> PeerRecord:
        rec = self._records.get(peer)
        if rec is None:
            rec = self._records[peer] = PeerRecord()
        return rec

    def score(self, peer: PeerId) -> float:
        rec = self._records.get(peer)
        if rec is None:
            return 0.0
        p = self.params
        return (
            min(rec.first_deliveries * p.first_delivery_weight, p.first_delivery_cap)
            + p.invalid_weight * rec.invalid**2
            + p.excess_weight * rec.excess
            + p.behaviour_weight * rec.behaviour**2
        )

    def first_delivery(self, peer: PeerId) -> None:
        self._rec(peer).first_deliveries += 1

    def invalid(self, peer: PeerId, count: int = 1) -> None:
        self._rec(peer).invalid += count

    def excess(self, peer: PeerId, count: int = 1) -> None:
        self._rec(peer).excess += count

    def misbehaved(self, peer: PeerId) -> None:
        self._rec(peer).behaviour += 1

    def graylisted(self, peer: PeerId) -> bool:
        return self.score(peer) < self.params.graylist_threshold

    def meshable(self, peer: PeerId) -> bool:
        return self.score(peer) >= self.params.mesh_threshold

    def gossipable(self, peer: PeerId) -> bool:
        return self.score(peer) >= self.params.gossip_threshold

    def publishable(self, peer: PeerId) -> bool:
        return self.score(peer) >= self.params.publish_threshold

    def decay(self, elapsed: float) -> None:
        """Let ``elapsed`` seconds of forgiveness pass."""
        p = self.params
        fd = 0.5 ** (elapsed / p.first_delivery_half_life)
        inv = 0.5 ** (elapsed / p.invalid_half_life)
        exc = 0.5 ** (elapsed / p.excess_half_life)
        beh = 0.5 ** (elapsed / p.behaviour_half_life)
        for peer in list(self._records):
            rec = self._records[peer]
            rec.first_deliveries = _shrink(rec.first_deliveries, fd)
            rec.invalid = _shrink(rec.invalid, inv)
            rec.excess = _shrink(rec.excess, exc)
            rec.behaviour = _shrink(rec.behaviour, beh)
            if rec.is_empty():
                del self._records[peer]


def _shrink(value: float, factor: float) -> float:
    value *= factor
    return value if value >= _FLOOR else 0.0
