"""Mesh maintenance bounds and peer scores, without a network."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon_p2p.errors import ConfigError
from cocoon_p2p.gossip import GossipConfig, Scoreboard, ScoreParams
from cocoon_p2p.gossip.mesh import maintain_mesh
from cocoon_p2p.identity import PeerId

CONFIG = GossipConfig()


def ids(n: int, start: int = 0) -> list[PeerId]:
    return [PeerId((start + i).to_bytes(32, "big")) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(
    mesh_size=st.integers(0, 30),
    extra=st.integers(0, 30),
    scores=st.lists(st.sampled_from([-50.0, -1.0, 0.0, 0.5, 3.0, 20.0]), min_size=60, max_size=60),
    seed=st.integers(0, 2**32),
)
def test_one_heartbeat_brings_the_mesh_within_bounds(
    mesh_size: int, extra: int, scores: list[float], seed: int
) -> None:
    mesh = set(ids(mesh_size))
    candidates = ids(extra, start=1000)
    score_of = {p: scores[i] for i, p in enumerate(ids(mesh_size) + candidates)}
    change = maintain_mesh(mesh, candidates, score_of.__getitem__, CONFIG, random.Random(seed))
    after = (mesh - set(change.prune)) | set(change.graft)

    assert not set(change.graft) & mesh, "grafts only peers outside the mesh"
    assert set(change.prune) <= mesh, "prunes only mesh members"
    assert all(score_of[p] >= 0 for p in after), "no peer under the mesh threshold stays or joins"
    good_members = [p for p in mesh if score_of[p] >= 0]
    eligible = [p for p in candidates if score_of[p] >= 0]
    if len(good_members) < CONFIG.d_lo:
        assert len(after) == min(CONFIG.d, len(good_members) + len(eligible))
    elif len(good_members) > CONFIG.d_hi:
        assert len(after) == CONFIG.d
        assert after <= set(good_members)

        def top(peers: set[PeerId] | list[PeerId]) -> list[float]:
            return sorted((score_of[p] for p in peers), reverse=True)[: CONFIG.d_score]

        assert top(after) == top(good_members), "the d_score best-scored members stay"
    else:
        assert after == set(good_members), "a mesh within [d_lo, d_hi] is left alone"


def test_oversized_mesh_keeps_the_best_scored_peers() -> None:
    mesh = set(ids(20))
    score_of = {p: float(i) for i, p in enumerate(sorted(mesh))}
    change = maintain_mesh(mesh, [], score_of.__getitem__, CONFIG, random.Random(3))
    after = mesh - set(change.prune)
    assert len(after) == CONFIG.d
    top = sorted(mesh, key=lambda p: -score_of[p])[: CONFIG.d_score]
    assert set(top) <= after


def test_mesh_choice_depends_on_the_seed_only() -> None:
    mesh = set(ids(2))
    candidates = ids(40, start=500)

    def run(order: list[PeerId]) -> list[PeerId]:
        return maintain_mesh(mesh, order, lambda p: 0.0, CONFIG, random.Random(9)).graft

    assert run(candidates) == run(list(reversed(candidates)))


def test_config_rejects_inconsistent_degrees_and_thresholds() -> None:
    with pytest.raises(ConfigError):
        GossipConfig(d=3, d_lo=4)
    with pytest.raises(ConfigError):
        GossipConfig(seen_ttl=10, max_clock_skew=5)
    with pytest.raises(ConfigError):
        ScoreParams(graylist_threshold=-10, gossip_threshold=-20)
    assert GossipConfig().max_message_age < GossipConfig().seen_ttl


# --- scores -------------------------------------------------------------------
PEER = ids(1)[0]


def test_invalid_messages_weigh_quadratically_and_graylist() -> None:
    board = Scoreboard(ScoreParams())
    board.invalid(PEER)
    assert board.score(PEER) == -10
    assert not board.meshable(PEER) and board.gossipable(PEER)
    board.invalid(PEER)
    assert board.score(PEER) == -40
    assert not board.gossipable(PEER) and board.publishable(PEER) and not board.graylisted(PEER)
    board.invalid(PEER, 2)
    assert board.graylisted(PEER)


def test_good_deliveries_are_capped_so_they_cannot_buy_a_flood() -> None:
    board = Scoreboard(ScoreParams())
    for _ in range(10_000):
        board.first_delivery(PEER)
    assert board.score(PEER) == ScoreParams().first_delivery_cap
    board.invalid(PEER, 4)
    assert board.graylisted(PEER)


def test_excess_and_misbehaviour_lower_the_score() -> None:
    board = Scoreboard(ScoreParams())
    board.excess(PEER, 30)
    assert board.score(PEER) == -30
    other = ids(1, start=7)[0]
    board.misbehaved(other)
    board.misbehaved(other)
    assert board.score(other) == -8


def test_scores_decay_back_to_neutral_and_are_forgotten() -> None:
    params = ScoreParams()
    board = Scoreboard(params)
    board.invalid(PEER, 10)
    assert board.graylisted(PEER)
    board.decay(params.invalid_half_life)
    assert board.score(PEER) == pytest.approx(-250)
    board.decay(params.invalid_half_life * 4)
    assert not board.graylisted(PEER)
    board.decay(params.invalid_half_life * 20)
    assert board.score(PEER) == 0 and len(board) == 0


def test_scores_are_per_peer() -> None:
    board = Scoreboard(ScoreParams())
    board.invalid(PEER, 5)
    assert board.score(ids(1, start=99)[0]) == 0
