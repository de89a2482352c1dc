"""Parameter sweeps: a grid of runs spread over worker processes.

Each grid point is an ordinary ``run_scenario`` call writing its own folder;
the sweep adds ``sweep.csv`` (parameters + each run's summary, one row per point,
in grid order) and ``sweep.json``. Runs only meet through those files, so the
``Executor`` below is the only thing to replace to spread them over Ray or Dask
(any object with the same ``map`` will do).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .results import environment, git_commit, peak_memory_mib, write_csv, write_manifest
from .runner import run_scenario

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Yield ``(index, fn(items[index]))`` in completion order."""
        ...


class SerialExecutor:
    """In-process, one run after another: for tests and debugging."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for index, item in enumerate(items):
            yield index, fn(item)


class ProcessExecutor:
    """Local worker processes. Spawned, not forked: a clean interpreter per worker
    inherits PYTHONHASHSEED from the environment and no state from the parent."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
            futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()


@dataclass(frozen=True)
class Job:
    scenario: str
    params: dict[str, Any]
    seed: int
    out_dir: Path
    plots: bool


def expand_grid(grid: dict[str, list[Any]], seeds: Sequence[int]) -> list[tuple[dict[str, Any], int]]:
    """Every combination of the grid's values, times every seed, in a fixed order."""
    names = list(grid)
    points = []
    for values in itertools.product(*(grid[n] for n in names)):
        for seed in seeds:
            points.append((dict(zip(names, values, strict=True)), seed))
    return points


def point_dir(root: Path, scenario: str, params: dict[str, Any], seed: int) -> Path:
    label = "-".join(f"{k}={v}" for k, v in params.items())
    return root / (f"{scenario}-{label}-s{seed}" if label else f"{scenario}-s{seed}")


def run_job(job: Job) -> dict[str, Any]:
    """Top-level (picklable) worker entry point."""
    result = run_scenario(job.scenario, job.params, job.seed, job.out_dir, show_progress=False, plots=job.plots)
    return {
        "summary": result.summary,
        "wall_time_s": result.manifest["wall_time_s"],
        "peak_mib": result.manifest["peak_memory_mib"]["self"],
    }


def run_sweep(
    scenario: str,
    grid: dict[str, list[Any]],
    seeds: Sequence[int],
    out_root: Path,
    *,
    executor: Executor | None = None,
    base: dict[str, Any] | None = None,
    plots: bool = False,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every grid point; returns the rows written to ``sweep.csv``."""
    points = expand_grid(grid, seeds)
    jobs = [
        Job(scenario, {**(base or {}), **params}, seed, point_dir(out_root, scenario, params, seed), plots)
        for params, seed in points
    ]
    executor = executor or ProcessExecutor()
    started = time.perf_counter()
    outcomes: dict[int, dict[str, Any]] = {}
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"sweep {scenario}", unit="run")
    for index, outcome in executor.map(run_job, jobs):
        outcomes[index] = outcome
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    rows = []
    for index, ((params, seed), job) in enumerate(zip(points, jobs, strict=True)):
        row: dict[str, Any] = {**params, "seed": seed, "folder": job.out_dir.name}
        row.update(outcomes[index]["summary"])
        rows.append(row)
    # Only summaries go in sweep.csv; wall time differs run to run and lives in sweep.json.
    write_csv(out_root / "sweep.csv", rows)
    write_manifest(
        out_root / "sweep.json",
        {
            "scenario": scenario,
            "grid": grid,
            "seeds": list(seeds),
            "base": base or {},
            "runs": len(jobs),
            "run_wall_time_s": [outcomes[i]["wall_time_s"] for i in range(len(jobs))],
            "run_peak_mib": [outcomes[i]["peak_mib"] for i in range(len(jobs))],
            "wall_time_s": round(time.perf_counter() - started, 3),
            "peak_memory_mib": peak_memory_mib(),
            "git": git_commit(),
            "environment": environment(),
        },
    )
    return rows
