"""Reputation: measurements move the weight, time decays it, the file survives restarts."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon_p2p.identity import PeerId
from cocoon_p2p.market import Reputation, ReputationConfig
from cocoon_p2p.market.reputation import FILE_NAME
from tests.market.helpers import ManualClock

A, B = PeerId(b"a" * 32), PeerId(b"b" * 32)
HOUR = 3600.0


def test_measurements_move_the_weight_in_the_expected_direction() -> None:
    rep = Reputation(None, ManualClock(), ReputationConfig(half_life_s=HOUR))
    prior = rep.weight(A)
    assert prior == 0.8 and rep.snapshot(A) is None
    for _ in range(20):
        rep.record_success(A, latency_ms=200, tokens_per_s=50)
    assert prior < rep.weight(A) <= 1.0
    rep.record_failure(B)
    failed_once = rep.weight(B)
    assert failed_once < prior
    rep.record_spot_check(B, passed=False)
    assert rep.weight(B) < failed_once - 0.1  # a wrong answer costs more than a timeout
    snap = rep.snapshot(A)
    assert snap is not None and snap["successes"] == 20 and snap["latency_ms"] == 200 and snap["weight"] > 0.95

    slow = Reputation(None, ManualClock(), ReputationConfig(latency_target_ms=1000, tokens_per_s_target=20))
    slow.record_success(A, latency_ms=500, tokens_per_s=40)
    slow.record_success(B, latency_ms=8000, tokens_per_s=5)
    assert slow.weight(B) < slow.weight(A) / 2


def test_history_decays_back_to_the_prior_with_the_half_life() -> None:
    clock = ManualClock()
    rep = Reputation(None, clock, ReputationConfig(half_life_s=HOUR))
    for _ in range(8):
        rep.record_failure(A)
    bad = rep.weight(A)
    clock.t += HOUR
    snap = rep.snapshot(A)
    assert snap is not None and abs(snap["failures"] - 4.0) < 1e-6
    assert rep.weight(A) > bad
    clock.t += 30 * HOUR
    assert abs(rep.weight(A) - rep.weight(B)) < 1e-6  # as good as a stranger again


def test_reputation_persists_atomically_and_survives_a_corrupt_file(tmp_path) -> None:
    clock = ManualClock()
    rep = Reputation(tmp_path, clock)
    rep.record_success(A, latency_ms=150, tokens_per_s=33)
    rep.record_spot_check(B, passed=False)
    path = tmp_path / FILE_NAME
    data = json.loads(path.read_text())
    assert set(data["workers"]) == {str(A), str(B)}
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temp file left behind
    reloaded = Reputation(tmp_path, clock)
    assert reloaded.weight(A) == rep.weight(A) and reloaded.weight(B) == rep.weight(B)
    assert reloaded.snapshot(A) == rep.snapshot(A)

    path.write_text("{not json")
    fresh = Reputation(tmp_path, clock)
    assert fresh.workers == {} and fresh.weight(A) == 0.8
    path.write_text(json.dumps({"workers": {"zz": {}, str(A): {"successes": "many", "latency_ms": -1}}}))
    odd = Reputation(tmp_path, clock)
    assert odd.weight(A) == 0.8 and set(odd.workers) == {A}


events = st.lists(
    st.tuples(
        st.sampled_from(["ok", "fail", "spot_ok", "spot_fail", "wait"]),
        st.floats(0, 1e6, allow_nan=False),
        st.one_of(st.none(), st.floats(0, 1e5), st.just(float("nan")), st.just(float("inf"))),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_weight_always_stays_in_zero_one(history) -> None:
    clock = ManualClock()
    rep = Reputation(None, clock, ReputationConfig(half_life_s=HOUR, tokens_per_s_target=10))
    for kind, dt, measure in history:
        if kind == "ok":
            rep.record_success(A, latency_ms=measure, tokens_per_s=measure)
        elif kind == "fail":
            rep.record_failure(A)
        elif kind.startswith("spot"):
            rep.record_spot_check(A, passed=kind == "spot_ok")
        else:
            clock.t += dt
        weight = rep.weight(A)
        assert 0 < weight <= 1
