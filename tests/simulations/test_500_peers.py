"""A 500-peer run of every protocol scenario completes (short virtual windows keep CI time down)."""

from __future__ import annotations

import pytest

from simulations import scenarios
from simulations.harness import NullProgress, Seeds
from simulations.runner import resolve_params

pytest.importorskip("cocoon_p2p.gossip")

N = 500


def _run(name: str, **knobs: object) -> tuple[dict, dict]:
    module = scenarios.load(name)
    tables = module.run(resolve_params(module, {"nodes": N, **knobs}), Seeds(1), NullProgress())
    return tables, module.summarize(tables)


@pytest.mark.slow
def test_dht_500_peers_warm() -> None:
    _, summary = _run("dht", join="warm", settle_s=2.0, duration_s=20.0, lookups=60)
    assert summary["lookups"] == 60 and summary["aborted"] == 0
    assert summary["find_peer_success"] == 1.0 and summary["closest_overlap_mean"] >= 0.95
    assert summary["hops_p99"] <= 5


@pytest.mark.slow
def test_gossip_500_peers() -> None:
    tables, summary = _run("gossip", messages=2, publishers=2, warmup_s=6.0, spacing_s=0.5, deadline_s=3.0)
    assert summary["messages"] == 2
    assert summary["reach_mean"] >= 0.95
    assert len(tables["peers"]) == N


@pytest.mark.slow
def test_market_500_peers() -> None:
    tables, summary = _run("market", jobs=20, warmup_s=3.0)
    assert summary["jobs"] == 20 and summary["completed"] >= 0.9
    # Offers live under one DHT key, and a store keeps 64 publishers per key: some workers never hear an RFQ.
    assert len(tables["workers"]) == 125


@pytest.mark.slow
def test_payments_500_peers() -> None:
    _, summary = _run("payments", jobs=20, demand=0.05, warmup_s=3.0)
    assert summary["jobs"] >= 18 and summary["channels"] >= summary["pairs"] >= 1


@pytest.mark.slow
def test_attacks_500_peers() -> None:
    _, summary = _run("attacks", lookups=20, messages=1, warmup_s=6.0, duration_s=4.0, deadline_s=3.0, spam_rate=2.0)
    assert summary["lookups"] == 20 and summary["unfinished"] == 0
    assert summary["find_peer_success"] > 0.5 and summary["reach_mean"] > 0.5
