"""Plot a sweep's summaries: one or more summary columns against one grid knob.

    python -m simulations plot results/sweep-dht --x nodes --y hops_p50,hops_p99 --logx
    python -m simulations plot results/sweep-dht-churn --x churn --y find_peer_success,closest_overlap_mean

Rows with the same x (other seeds) are averaged. When other grid knobs vary too,
each combination of their values gets its own line. A non-numeric x (``churn=exp:600``)
is plotted in grid order with the values as tick labels.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import _pyplot, _save, read_csv


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def series_from_sweep(rows: list[dict[str, str]], x: str, ys: list[str], others: list[str]) -> dict[str, Any]:
    """``{label: (x values, y values)}`` with y averaged over rows sharing x and the other knobs."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    order: list[str] = []
    for row in rows:
        if row[x] not in order:
            order.append(row[x])
        rest = ", ".join(f"{k}={row[k]}" for k in others)
        for y in ys:
            value = _number(row.get(y, ""))
            if value is None:
                continue
            label = f"{y} ({rest})" if rest else y
            groups.setdefault((label, row[x]), {}).setdefault("v", []).append(value)
    out: dict[str, tuple[list[str], list[float]]] = {}
    for (label, xv), bucket in groups.items():
        xs, vals = out.setdefault(label, ([], []))
        xs.append(xv)
        vals.append(sum(bucket["v"]) / len(bucket["v"]))
    for label, (xs, vals) in out.items():
        pairs = sorted(zip(xs, vals, strict=True), key=lambda p: order.index(p[0]))
        out[label] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def plot_sweep(
    sweep_dir: Path,
    x: str,
    ys: list[str],
    out: Path | None = None,
    *,
    logx: bool = False,
    title: str | None = None,
    ylabel: str | None = None,
) -> Path:
    rows = read_csv(sweep_dir / "sweep.csv")
    if not rows or x not in rows[0]:
        raise SystemExit(f"{sweep_dir}/sweep.csv has no column {x!r}")
    meta = json.loads((sweep_dir / "sweep.json").read_text()) if (sweep_dir / "sweep.json").exists() else {}
    others = [k for k in meta.get("grid", {}) if k != x]
    series = series_from_sweep(rows, x, ys, others)
    numeric = all(_number(v) is not None for xs, _ in series.values() for v in xs)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels: list[str] = []
    for label, (xs, vals) in series.items():
        if numeric:
            ax.plot([float(v) for v in xs], vals, marker="o", markersize=4, label=label)
        else:
            for v in xs:
                if v not in labels:
                    labels.append(v)
            ax.plot([labels.index(v) for v in xs], vals, marker="o", markersize=4, label=label)
    if not numeric:
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=20)
    if logx and numeric:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or ", ".join(ys))
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{meta.get('scenario', 'sweep')}: {', '.join(ys)} vs {x}")
    ax.legend(fontsize=8)
    return _save(fig, plt, out or sweep_dir / f"{'_'.join(ys)}_vs_{x}.png")


def cmd_plot(prog: str, argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{prog} plot", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a folder written by `sweep` (holds sweep.csv)")
    parser.add_argument("--x", required=True, help="grid knob on the x axis")
    parser.add_argument("--y", required=True, help="comma-separated summary columns")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: in the sweep folder)")
    parser.add_argument("--logx", action="store_true")
    parser.add_argument("--title", default=None)
    parser.add_argument("--ylabel", default=None)
    args = parser.parse_args(argv)
    path = plot_sweep(
        args.sweep_dir,
        args.x,
        [y.strip() for y in args.y.split(",") if y.strip()],
        args.out,
        logx=args.logx,
        title=args.title,
        ylabel=args.ylabel,
    )
    print(f"wrote {path}")
    return 0
