"""The production stack (Host, Noise, RPC, DHT) running unmodified on SimNetwork."""

from __future__ import annotations

import pytest

from simulations import scenarios
from simulations.harness import NullProgress, Seeds
from simulations.runner import resolve_params

pytest.importorskip("cocoon_p2p.rpc")


def _run(name: str, seed: int = 1, **knobs):
    module = scenarios.load(name)
    tables = module.run(resolve_params(module, knobs), Seeds(seed), NullProgress())
    return tables, module.summarize(tables)


def test_rpcping_connect_is_two_rtts_and_each_call_one() -> None:
    tables, summary = _run("rpcping", nodes=30, latency="regions")
    rows = tables["rows"]
    assert rows and all(r["ok"] for r in rows)
    for row in rows:
        rtt = 2 * row["one_way_s"]
        # TCP handshake + Noise XX up to message 3, unless the target had dialled us already.
        assert row["connect_s"] == (0.0 if row["pooled"] else 2 * rtt)
        assert row["call_s"] == rtt
    assert summary["calls_failed"] == 0
    assert 0 < summary["pooled_connections"] < len(rows) // 3
    assert all(p["handshake_failures"] == 0 for p in tables["peers"])


def test_rpcping_is_deterministic() -> None:
    first, _ = _run("rpcping", seed=4, nodes=20)
    second, _ = _run("rpcping", seed=4, nodes=20)
    assert first == second


def test_rpcping_across_a_partition_fails_cleanly() -> None:
    # Every dial is lost: connects fail after the timeout, and the run still ends.
    tables, summary = _run("rpcping", nodes=6, dial_failure=1.0, connect_timeout=2.0)
    assert summary["calls_ok"] == 0
    assert all(r["call"] == 0 and r["connect_s"] == 2.0 for r in tables["rows"])


@pytest.mark.slow
def test_dht_lookups_find_peers_and_the_true_closest() -> None:
    _, summary = _run("dht", nodes=40, join_spread_s=20.0, settle_s=20.0, duration_s=60.0, lookups=30, k=8)
    assert summary["lookups"] == 30 and summary["aborted"] == 0
    assert summary["find_peer_success"] == 1.0
    assert summary["closest_overlap_mean"] == 1.0


@pytest.mark.slow
def test_dht_under_churn_is_deterministic_and_keeps_working() -> None:
    knobs = dict(
        nodes=16,
        join_spread_s=10.0,
        settle_s=10.0,
        duration_s=60.0,
        lookups=20,
        k=6,
        churn="weibull:60:0.5",
        downtime="exp:30",
    )
    first, summary = _run("dht", seed=2, **knobs)
    second, _ = _run("dht", seed=2, **knobs)
    assert first == second
    sessions = [p["sessions"] for p in first["peers"]]
    assert sessions[0] == 1 and max(sessions) > 1  # the bootstrap stays, others come back
    assert min(s["online"] for s in first["timeline"]) < 16
    assert summary["find_peer_success"] >= 0.8
