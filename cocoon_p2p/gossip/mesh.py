"""Mesh maintenance as a pure function, so its bounds can be tested without a network."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..identity import PeerId
from .config import GossipConfig


@dataclass
class MeshChange:
    graft: list[PeerId] = field(default_factory=list)
    prune: list[PeerId] = field(default_factory=list)


def maintain_mesh(
    mesh: set[PeerId],
    candidates: Iterable[PeerId],
    score: Callable[[PeerId], float],
    config: GossipConfig,
    rng: random.Random,
) -> MeshChange:
    """What one heartbeat changes in one topic's mesh (gossipsub v1.1 rules).

    ``candidates`` are peers known to subscribe that may be grafted now (not in
    backoff, not ourselves). Peers under the mesh threshold leave; a mesh below
    ``d_lo`` grows to ``d``; one above ``d_hi`` shrinks to ``d``, keeping the
    ``d_score`` best-scored peers and a random rest, so a few well-behaved
    peers cannot be pushed out by a crowd of fresh ones.
    """
    threshold = config.score.mesh_threshold
    change = MeshChange()
    # Sorting first makes the choice depend on the rng only, not on set order.
    kept = sorted(mesh, key=lambda p: p.raw)
    for peer in kept:
        if score(peer) < threshold:
            change.prune.append(peer)
    kept = [p for p in kept if p not in change.prune]
    if len(kept) < config.d_lo:
        pool = sorted({p for p in candidates if p not in mesh and score(p) >= threshold}, key=lambda p: p.raw)
        change.graft = rng.sample(pool, min(config.d - len(kept), len(pool)))
    elif len(kept) > config.d_hi:
        by_score = sorted(kept, key=lambda p: (-score(p), p.raw))
        best = by_score[: config.d_score]
        rest = by_score[config.d_score :]
        chosen = set(best) | set(rng.sample(rest, config.d - len(best)))
        change.prune.extend(p for p in kept if p not in chosen)
    return change


def pick(peers: Iterable[PeerId], count: int, rng: random.Random) -> list[PeerId]:
    """Up to ``count`` peers at random, independent of iteration order."""
    pool = sorted(set(peers), key=lambda p: p.raw)
    return rng.sample(pool, min(count, len(pool)))
