"""Run one scenario end to end: parameters + seed -> results folder."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import scenarios
from .harness import NETWORK_KNOBS, Knob, NullProgress, Progress, Seeds, TqdmProgress
from .results import environment, git_commit, peak_memory_mib, sanitize, write_csv, write_manifest


def knobs_of(module: ModuleType) -> dict[str, Knob]:
    """Every knob a scenario accepts: the shared network ones, then its own (which may override defaults)."""
    merged = dict(NETWORK_KNOBS)
    merged.update(getattr(module, "KNOBS", {}))
    return merged


def resolve_params(module: ModuleType, overrides: dict[str, Any]) -> dict[str, Any]:
    knobs = knobs_of(module)
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        raise ValueError(f"scenario {module.NAME} has no knob(s) {', '.join(unknown)}; see --help")
    params: dict[str, Any] = {}
    for name, knob in knobs.items():
        value = overrides.get(name, knob.default)
        if isinstance(value, str) and not isinstance(knob.default, str):
            try:
                value = knob.convert(value)
            except ValueError as exc:
                raise ValueError(f"--{name.replace('_', '-')} {value!r}: {exc}") from None
        params[name] = value
    return params


def default_out_dir(name: str, params: dict[str, Any], seed: int, root: Path = Path("results")) -> Path:
    # Named by seed and size rather than a timestamp, so a rerun lands in (and
    # overwrites) the same folder and results are easy to diff.
    return root / f"{name}-n{params['nodes']}-s{seed}"


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]


def run_scenario(
    name: str,
    overrides: dict[str, Any],
    seed: int,
    out_dir: Path | None = None,
    *,
    show_progress: bool = True,
    plots: bool = True,
) -> RunResult:
    """Run scenario ``name`` and write ``<table>.csv``, plots and ``manifest.json`` into ``out_dir``."""
    module = scenarios.load(name)
    params = resolve_params(module, overrides)
    out = out_dir or default_out_dir(name, params, seed)
    out.mkdir(parents=True, exist_ok=True)
    progress: Progress = TqdmProgress(f"{name} n={params['nodes']} seed={seed}") if show_progress else NullProgress()
    started = datetime.datetime.now(datetime.UTC)
    wall_start = time.perf_counter()
    try:
        tables = module.run(params, Seeds(seed), progress)
    finally:
        progress.close()
    wall = time.perf_counter() - wall_start
    files = [write_csv(out / f"{table}.csv", rows).name for table, rows in tables.items()]
    summary = sanitize(module.summarize(tables)) if hasattr(module, "summarize") else {}
    if plots and hasattr(module, "plot"):
        files += [path.name for path in module.plot(tables, out)]
    manifest = {
        "scenario": name,
        "question": getattr(module, "QUESTION", ""),
        "seed": seed,
        "params": params,
        "summary": summary,
        "files": sorted(files),
        "git": git_commit(),
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_time_s": round(wall, 3),
        "peak_memory_mib": peak_memory_mib(),
        "environment": environment(),
    }
    write_manifest(out / "manifest.json", manifest)
    return RunResult(out, summary, manifest)
