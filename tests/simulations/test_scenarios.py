"""Scenarios through the runner: determinism, exact RTTs, scale, the results folder."""

from __future__ import annotations

import json
import math

import pytest

from simulations import scenarios
from simulations.harness import NullProgress, Seeds
from simulations.results import read_csv
from simulations.runner import resolve_params, run_scenario
from simulations.sweep import SerialExecutor, expand_grid, run_sweep


def _run_netcheck(nodes: int, seed: int = 1, **knobs):
    module = scenarios.load("netcheck")
    params = resolve_params(module, {"nodes": nodes, **knobs})
    tables = module.run(params, Seeds(seed), NullProgress())
    return tables, module.summarize(tables)


def test_same_seed_gives_byte_identical_csv(tmp_path) -> None:
    first = run_scenario("netcheck", {"nodes": 60}, 5, tmp_path / "a", show_progress=False, plots=False)
    second = run_scenario("netcheck", {"nodes": 60}, 5, tmp_path / "b", show_progress=False, plots=False)
    for table in ("rows.csv", "peers.csv"):
        assert (first.out_dir / table).read_bytes() == (second.out_dir / table).read_bytes()
    other = run_scenario("netcheck", {"nodes": 60}, 6, tmp_path / "c", show_progress=False, plots=False)
    assert (other.out_dir / "rows.csv").read_bytes() != (first.out_dir / "rows.csv").read_bytes()


@pytest.mark.parametrize("latency", ["constant", "coords", "regions"])
def test_netcheck_rtt_is_exactly_twice_the_configured_latency(latency) -> None:
    tables, summary = _run_netcheck(40, latency=latency)
    rows = tables["rows"]
    assert len(rows) == 40 * 3 * 3
    for row in rows:
        assert row["ok"] == 1
        assert row["rtt_s"] == 2 * row["one_way_s"] == row["expected_rtt_s"]
        assert row["dial_s"] == 2 * row["one_way_s"]
    assert summary["exact_fraction"] == 1.0


def test_netcheck_with_a_bandwidth_cap_adds_serialisation() -> None:
    tables, _ = _run_netcheck(10, bandwidth_mbps=1.0, size=12_500, pairs=1, rounds=1, start_spread_s=100.0)
    # 12 500 bytes at 125 000 B/s: 0.1 s on each uplink. Start times are spread
    # far apart, so no uplink is shared and the expectation is exact.
    for row in tables["rows"]:
        assert row["rtt_s"] > 2 * row["one_way_s"] + 0.2 - 1e-6
        assert row["error_s"] == 0.0


def test_netcheck_dial_failures_are_reported_not_fatal() -> None:
    tables, summary = _run_netcheck(20, dial_failure=0.5, connect_timeout=2.0)
    failed = [r for r in tables["rows"] if not r["ok"]]
    assert failed and summary["failed_dials"] == len(failed)
    assert all(r["dial_s"] == 2.0 and math.isnan(r["rtt_s"]) for r in failed)


def test_netcheck_500_peers() -> None:
    tables, summary = _run_netcheck(500, rounds=1)
    assert summary["echoes"] == 500 * 3
    assert summary["max_abs_error_s"] == 0.0
    assert len(tables["peers"]) == 500
    assert sum(p["dials"] for p in tables["peers"]) == 1500


def test_results_folder_has_csv_plots_and_manifest(tmp_path) -> None:
    result = run_scenario("netcheck", {"nodes": 12, "pairs": 2}, 9, tmp_path / "out", show_progress=False)
    names = {p.name for p in result.out_dir.iterdir()}
    assert {"rows.csv", "peers.csv", "manifest.json", "rtt_cdf.png", "rtt_vs_configured.png"} <= names
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["seed"] == 9
    assert manifest["params"]["nodes"] == 12 and manifest["params"]["pairs"] == 2
    assert {"commit", "dirty"} <= set(manifest["git"])
    assert manifest["wall_time_s"] >= 0 and manifest["peak_memory_mib"]["self"] > 0
    assert manifest["summary"]["exact_fraction"] == 1.0
    assert len(read_csv(result.out_dir / "rows.csv")) == 12 * 2 * 3


def test_unknown_scenarios_and_knobs_are_rejected() -> None:
    assert {"gossip", "market", "payments", "attacks"} <= set(scenarios.SCENARIOS)
    with pytest.raises(scenarios.UnknownScenario):
        scenarios.load("nope")
    with pytest.raises(ValueError, match="no knob"):
        resolve_params(scenarios.load("netcheck"), {"warp_speed": 9})


def test_sweep_runs_the_grid_in_order(tmp_path) -> None:
    grid = {"nodes": [8, 16], "latency": ["constant", "regions"]}
    assert len(expand_grid(grid, [1, 2])) == 8
    rows = run_sweep(
        "netcheck", grid, [1], tmp_path, executor=SerialExecutor(), base={"rounds": 1}, show_progress=False
    )
    assert [(r["nodes"], r["latency"]) for r in rows] == [
        (8, "constant"),
        (8, "regions"),
        (16, "constant"),
        (16, "regions"),
    ]
    assert all(r["exact_fraction"] == 1.0 for r in rows)
    on_disk = read_csv(tmp_path / "sweep.csv")
    assert [r["folder"] for r in on_disk] == [r["folder"] for r in rows]
    assert (tmp_path / "sweep.json").exists()
    assert all((tmp_path / r["folder"] / "rows.csv").exists() for r in rows)
