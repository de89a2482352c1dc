"""``python -m simulations`` in fresh processes, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulations", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_run_twice_in_separate_processes_gives_identical_csv(tmp_path) -> None:
    # Separate interpreters also differ in hash seed unless the CLI pins it.
    outs = [tmp_path / "one", tmp_path / "two"]
    for out in outs:
        done = _cli(
            "run",
            "netcheck",
            "--nodes",
            "40",
            "--seed",
            "11",
            "--out",
            str(out),
            "--no-progress",
            "--latency",
            "regions",
            "--pairs",
            "2",
        )
        assert done.returncode == 0, done.stderr
        assert "results in" in done.stdout
    for table in ("rows.csv", "peers.csv"):
        assert (outs[0] / table).read_bytes() == (outs[1] / table).read_bytes()
    manifest = json.loads((outs[0] / "manifest.json").read_text())
    assert manifest["params"]["latency"] == "regions" and manifest["params"]["pairs"] == 2
    assert manifest["environment"]["pythonhashseed"] == "0"


def test_list_names_every_scenario() -> None:
    done = _cli("list")
    assert done.returncode == 0
    for name in ("netcheck", "rpcping", "dht", "gossip", "market", "payments", "attacks"):
        assert name in done.stdout


def test_bad_input_fails_with_a_message(tmp_path) -> None:
    assert "unknown scenario" in _cli("run", "gosip").stderr
    done = _cli("run", "netcheck", "--nodes", "ten", "--out", str(tmp_path))
    assert done.returncode != 0


def test_sweep_over_worker_processes(tmp_path) -> None:
    done = _cli(
        "sweep",
        "netcheck",
        "--grid",
        "nodes=6,10",
        "--seeds",
        "1,2",
        "--rounds",
        "1",
        "--workers",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(lines) == 1 + 4
    assert lines[0].startswith("nodes,seed,folder,")
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"] == 4
    plotted = _cli("plot", str(tmp_path), "--x", "nodes", "--y", "rtt_p50_s,rtt_p99_s")
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "rtt_p50_s_rtt_p99_s_vs_nodes.png").stat().st_size > 0
