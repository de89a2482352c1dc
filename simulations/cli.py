"""``python -m simulations``: run, sweep and list scenarios.

    python -m simulations list
    python -m simulations run netcheck --nodes 500 --seed 1 [--out DIR] [--one-way-ms 40 ...]
    python -m simulations sweep netcheck --grid nodes=100,500 --grid latency=coords,regions \
        --seeds 1,2,3 --workers 4 --out results/sweep-netcheck
    python -m simulations plot results/sweep-netcheck --x nodes --y rtt_p50_s

Scenario knobs become flags (``one_way_ms`` -> ``--one-way-ms``); ``run SCENARIO
--help`` lists them with their defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import scenarios
from .runner import knobs_of, resolve_params, run_scenario
from .sweep import ProcessExecutor, SerialExecutor, run_sweep


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scenario_parser(prog: str, name: str, *, sweep: bool) -> argparse.ArgumentParser:
    module = scenarios.load(name)
    parser = argparse.ArgumentParser(
        prog=f"{prog} {'sweep' if sweep else 'run'} {name}",
        description=getattr(module, "QUESTION", ""),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if sweep:
        parser.add_argument("--seeds", default="1", help="comma-separated seeds, each run for every grid point")
        parser.add_argument(
            "--grid", action="append", default=[], metavar="KNOB=V1,V2", help="a knob and its values (repeatable)"
        )
        parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
        parser.add_argument("--serial", action="store_true", help="run in this process, one after another")
        parser.add_argument("--plots", action="store_true", help="also draw each run's plots")
    else:
        parser.add_argument("--seed", type=int, default=1, help="master seed")
        parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for knob_name, knob in knobs_of(module).items():
        # Values stay strings here and are converted by the knob, so that sweep
        # grids and single runs parse the same way.
        parser.add_argument(
            _flag(knob_name), dest=knob_name, default=None, help=f"{knob.help} (default: {knob.default})"
        )
    return parser


def _overrides(args: argparse.Namespace, module_name: str) -> dict[str, Any]:
    module = scenarios.load(module_name)
    return {name: getattr(args, name) for name in knobs_of(module) if getattr(args, name) is not None}


def _parse_grid(module_name: str, specs: list[str]) -> dict[str, list[Any]]:
    module = scenarios.load(module_name)
    knobs = knobs_of(module)
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or name not in knobs:
            raise SystemExit(f"bad --grid {spec!r}: write KNOB=V1,V2 with a knob of {module_name}")
        try:
            grid[name] = [knobs[name].convert(v.strip()) for v in values.split(",") if v.strip()]
        except ValueError as exc:
            raise SystemExit(f"bad --grid {spec!r}: {exc}") from None
    return grid


def cmd_list() -> int:
    print("scenarios:")
    for name in sorted(scenarios.SCENARIOS):
        try:
            question = scenarios.load(name).QUESTION
        except ImportError as exc:  # a layer it needs is not importable yet
            question = f"(unavailable: {exc})"
        print(f"  {name:10} {question}")
    print("planned:")
    for name, question in scenarios.PLANNED.items():
        print(f"  {name:10} {question}")
    return 0


def cmd_run(prog: str, name: str, argv: Sequence[str]) -> int:
    args = _scenario_parser(prog, name, sweep=False).parse_args(argv)
    overrides = _overrides(args, name)
    try:
        resolve_params(scenarios.load(name), overrides)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    result = run_scenario(
        name, overrides, args.seed, args.out, show_progress=not args.no_progress, plots=not args.no_plots
    )
    print(f"results in {result.out_dir}")
    for key, value in result.summary.items():
        print(f"  {key}: {value}")
    return 0


def cmd_sweep(prog: str, name: str, argv: Sequence[str]) -> int:
    args = _scenario_parser(prog, name, sweep=True).parse_args(argv)
    grid = _parse_grid(name, args.grid)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = {k: v for k, v in _overrides(args, name).items() if k not in grid}
    out = args.out or Path("results") / f"sweep-{name}-s{'_'.join(map(str, seeds))}"
    executor = SerialExecutor() if args.serial else ProcessExecutor(args.workers)
    rows = run_sweep(
        name, grid, seeds, out, executor=executor, base=base, plots=args.plots, show_progress=not args.no_progress
    )
    print(f"{len(rows)} runs; summary in {out / 'sweep.csv'}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m simulations") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (
        f"usage: {prog} {{list | run SCENARIO [knobs] | sweep SCENARIO [--grid K=V1,V2] [knobs] "
        "| plot SWEEP_DIR --x KNOB --y COLUMNS}"
    )
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "list":
        return cmd_list()
    if command == "plot":
        from .sweep_plot import cmd_plot

        return cmd_plot(prog, rest)
    if command not in ("run", "sweep"):
        print(usage, file=sys.stderr)
        return 2
    if not rest or rest[0].startswith("-"):
        print(f"{command} needs a scenario name; try `{prog} list`", file=sys.stderr)
        return 2
    try:
        scenarios.load(rest[0])
    except scenarios.UnknownScenario as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if command == "run":
        return cmd_run(prog, rest[0], rest[1:])
    return cmd_sweep(prog, rest[0], rest[1:])
