"""Writing a run's results: CSV tables, PNG plots and a JSON manifest.

CSV output must be byte-identical for the same seed and parameters, so columns
come from the first row in insertion order and floats are written with ``repr``
(the shortest exact round-trip form). Everything that legitimately varies between
runs (wall time, memory, date) goes into the manifest only.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Row = Mapping[str, Any]
Rows = Sequence[Row]
#: What a scenario returns: table name -> rows (written as ``<name>.csv``).
Tables = Mapping[str, Rows]


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return value


def write_csv(path: Path, rows: Rows) -> Path:
    """Write rows (all with the first row's columns) to ``path``; an empty table gets an empty file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        if rows:
            columns = list(rows[0].keys())
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row[c]) for c in columns])
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    """The checkout's commit and whether it has local changes; ``None`` outside git."""
    where = cwd or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    commit = head.stdout.strip() if head.returncode == 0 else None
    return {"commit": commit, "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}


def peak_memory_mib() -> dict[str, float]:
    """Peak resident memory of this process and of finished child processes (Linux: KiB units)."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return {"self": round(own, 1), "children": round(children, 1)}


def environment() -> dict[str, Any]:
    import trio

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "trio": trio.__version__,
        "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
    }


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, indent=2, sort_keys=True, default=_json_default)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return repr(value)


def sanitize(summary: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: summaries carry ``None`` for 'no data'."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


# --- plots --------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_cdf(path: Path, series: Mapping[str, Sequence[float]], *, xlabel: str, title: str) -> Path:
    """Empirical CDFs, one line per named series."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, values in series.items():
        ordered = sorted(v for v in values if not math.isnan(v))
        if not ordered:
            continue
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(ordered, ys, where="post", label=f"{name} (n={len(ordered)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(fig, plt, path)


def plot_scatter(
    path: Path,
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    diagonal: bool = False,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.scatter(xs, ys, s=6, alpha=0.5)
    if diagonal and xs:
        top = max(max(xs), max(ys))
        ax.plot([0, top], [0, top], color="grey", linewidth=0.8, label="y = x")
        ax.legend(loc="upper left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _save(fig, plt, path)


def plot_points(
    path: Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
    lines: bool = False,
) -> Path:
    """One marker series (optionally joined by lines) per name: ``{name: (xs, ys)}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, (xs, ys) in series.items():
        if lines:
            ax.plot(xs, ys, marker="o", markersize=4, label=name)
        else:
            ax.scatter(xs, ys, s=12, alpha=0.7, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend()
    return _save(fig, plt, path)


def plot_lines(
    path: Path, xs: Sequence[float], series: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str, title: str
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend()
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # No timestamp in the PNG metadata, so identical runs give identical files.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
