"""The gossip, market, payments and attacks scenarios: same seed -> same CSV, and what they measure."""

from __future__ import annotations

import functools
import math

import pytest

from simulations import scenarios
from simulations.harness import NullProgress, Seeds
from simulations.runner import resolve_params, run_scenario

pytest.importorskip("cocoon_p2p.gossip")

SMALL: dict[str, dict[str, object]] = {
    "gossip": {"nodes": 30, "messages": 4, "publishers": 2, "warmup_s": 10.0, "spacing_s": 1.0, "deadline_s": 5.0},
    "market": {"nodes": 20, "jobs": 12, "warmup_s": 5.0},
    "payments": {"nodes": 16, "jobs": 16, "demand": 0.1, "warmup_s": 5.0},
    "attacks": {
        "nodes": 30,
        "lookups": 10,
        "messages": 3,
        "warmup_s": 10.0,
        "duration_s": 10.0,
        "deadline_s": 5.0,
        "spam_rate": 5.0,
    },
    "dht": {"nodes": 40, "join": "warm", "settle_s": 2.0, "duration_s": 10.0, "lookups": 20, "k": 8},
}


def _run(name: str, seed: int = 1, **knobs: object):
    module = scenarios.load(name)
    tables = module.run(resolve_params(module, {**SMALL[name], **knobs}), Seeds(seed), NullProgress())
    return tables, module.summarize(tables)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_gives_identical_csv(name: str, tmp_path) -> None:
    runs = [
        run_scenario(name, dict(SMALL[name]), 7, tmp_path / str(n), show_progress=False, plots=n == 0) for n in range(2)
    ]
    tables = sorted(p.name for p in runs[0].out_dir.glob("*.csv"))
    assert "rows.csv" in tables
    for table in tables:
        assert (runs[0].out_dir / table).read_bytes() == (runs[1].out_dir / table).read_bytes(), table
    assert list(runs[0].out_dir.glob("*.png")), "the first run draws its plots"


def test_gossip_reaches_every_subscriber_and_counts_copies() -> None:
    tables, summary = _run("gossip")
    assert summary["messages"] == 4 and summary["reach_min"] == 1.0
    assert summary["redelivered"] == 0
    # Each delivered copy was received at least once, and D = 6 meshes send several.
    assert all(d["copies"] >= 1 for d in tables["deliveries"] if d["got"])
    assert 1.0 <= summary["copies_per_peer"] <= 20.0
    assert all(d["hops"] >= 0 and d["latency_s"] > 0 for d in tables["deliveries"] if d["got"])


def test_gossip_under_churn_keeps_publishers_and_measures_only_covered_subscribers() -> None:
    tables, summary = _run("gossip", churn="exp:20", downtime="exp:10", messages=6)
    sessions = {p["peer"]: p["sessions"] for p in tables["peers"]}
    publishers = [p["peer"] for p in tables["peers"] if p["publisher"]]
    assert all(sessions[p] == 1 for p in publishers) and max(sessions.values()) > 1
    assert all(r["eligible"] < 29 for r in tables["rows"])  # someone was away for every message
    assert summary["reach_mean"] > 0.5


def test_market_awards_the_cheapest_bid_and_pays_the_second_price() -> None:
    tables, summary = _run("market")
    ok = [r for r in tables["rows"] if r["status"] == "ok"]
    assert summary["completed"] == 1.0 and len(ok) == 12
    for r in ok:
        assert r["price_first"] == r["ask_completion"] <= r["price_second"]
        if r["refused_awards"] == 0:
            assert r["price_second"] == r["price_paid"]
            assert r["paid"] == r["cost_second"] > 0
        if r["bids"] == 1:
            assert r["price_second"] == 400_000_000  # a lone bid is paid the client's max price
    workers = tables["workers"]
    assert sum(w["earned"] for w in workers) == sum(r["paid"] for r in ok)
    assert sum(w["jobs_finished"] for w in workers) == len(ok)


def test_market_first_price_pays_the_winners_own_bid() -> None:
    tables, summary = _run("market", rule="first")
    ok = [r for r in tables["rows"] if r["status"] == "ok"]
    # An award the first winner refused (its slots filled meanwhile) falls back to the production rule.
    first = [r for r in ok if r["refused_awards"] == 0]
    assert len(first) >= len(ok) - 2
    assert first and all(r["price_paid"] == r["price_first"] and r["paid"] == r["cost_first"] for r in first)
    assert summary["second_over_first"] >= 1.0


def test_payments_counts_opens_and_closes_per_thousand_jobs() -> None:
    tables, summary = _run("payments")
    assert summary["jobs"] == 16
    opens = summary["opens_per_1000_jobs"] * summary["jobs"] / 1000
    assert math.isclose(opens, summary["channels"])
    assert summary["channels"] >= summary["pairs"] >= 1
    # Every channel is closed by the horizon (idle close), one message each; opens one message each.
    assert summary["onchain_messages_per_1000_jobs"] == 2 * summary["opens_per_1000_jobs"]
    assert sum(c["jobs"] for c in tables["rows"]) == 16


def test_attacks_without_sybils_is_clean_and_with_eclipsing_sybils_is_not() -> None:
    _, clean = _run("attacks", sybil_fraction=0.0, spammers=0)
    assert clean["find_peer_success"] == 1.0 and clean["closest_overlap_mean"] == 1.0
    assert clean["reach_min"] == 1.0
    tables, attacked = _run("attacks", sybil_fraction=0.3)
    assert attacked["closest_overlap_mean"] < 1.0
    assert attacked["spammer_graylisted_share"] > 0.5  # invalid spam gets its sender graylisted
    roles = [p["role"] for p in tables["peers"]]
    assert roles.count("sybil") == 9 and roles.count("spammer") == 1


@functools.cache
def _clean_attacks() -> dict[str, object]:
    return _run("attacks", sybil_fraction=0.0, spammers=0, messages=1)[1]


@pytest.mark.parametrize("mode", ["random", "close", "drop"])
def test_attack_modes_slow_lookups_down(mode: str) -> None:
    clean = _clean_attacks()
    _, summary = _run("attacks", sybil_fraction=0.3, sybil_mode=mode, spammers=0, messages=1)
    assert summary["unfinished"] == 0  # within lookup_grace_s
    assert 0.0 <= summary["closest_overlap_mean"] <= 1.0
    # Dead contacts (random, close) and silent Sybils (drop) cost query timeouts.
    assert summary["lookup_p99_s"] > clean["lookup_p99_s"]
