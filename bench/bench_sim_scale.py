"""How far the simulator scales in one process: wall time and memory per peer count.

Two modes:

- sizes (default): the ``netcheck`` scenario (bare SimNetwork streams) and the
  ``rpcping`` scenario (real Hosts: Noise XX handshakes, msgpack RPC) at growing
  sizes, each in a fresh process so peak memory is per run;
- ``--hour``: the issue's scale target — the ``dht`` scenario with 10,000 peers
  (production ``Host`` + ``Dht`` each, warm start), one hour of virtual time with
  churn (Weibull sessions, mean 1 h, shape 0.5; exponential downtime, mean 15 min;
  returning peers rejoin through the protocol) and lookups throughout. Target:
  under 10 minutes and 8 GB on a 2-core machine. It prints a line per virtual
  ``--report-every`` seconds (wall time so far, RSS), so a run stopped early still
  gives the rate; ``--virtual-s`` shortens it.

Virtual-time results are identical on any machine; the wall times and MiB figures are this machine's.

    python -m bench.bench_sim_scale [--sizes 250,500,1000,2000] [--scenarios netcheck,rpcping]
    python -m bench.bench_sim_scale --hour [--nodes 10000] [--virtual-s 3600]
        [--evict-ping-after-s 900] [--refresh-s 600]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from typing import Any

from cocoon_p2p.dht import DhtConfig

TARGET_WALL_S = 600.0
TARGET_RSS_MIB = 8192.0


def _rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _one(scenario: str, nodes: int, seed: int) -> dict[str, Any]:
    from simulations import scenarios
    from simulations.harness import NullProgress, Seeds
    from simulations.runner import resolve_params

    module = scenarios.load(scenario)
    params = resolve_params(module, {"nodes": nodes})
    started = time.perf_counter()
    tables = module.run(params, Seeds(seed), NullProgress())
    wall = time.perf_counter() - started
    summary = module.summarize(tables)
    connections = sum(p["dials"] for p in tables["peers"])
    return {
        "scenario": scenario,
        "nodes": nodes,
        "connections": connections,
        "wall_s": round(wall, 2),
        "ms_per_connection": round(1000 * wall / max(1, connections), 3),
        "peak_rss_mib": _rss_mib(),
        "ok": summary.get("echoes", summary.get("calls_ok")),
    }


class _Reporter:
    """A harness Progress that prints wall time and memory every ``every`` virtual seconds."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.next = every
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def set_total(self, virtual_seconds: float | None) -> None:
        self.total = virtual_seconds

    def update(self, virtual_now: float) -> None:
        if virtual_now >= self.next:
            wall = time.perf_counter() - self.started
            cpu = time.process_time() - self.cpu_started
            line = {
                "virtual_s": round(virtual_now),
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "rss_mib": _rss_mib(),
            }
            print(json.dumps(line))
            sys.stdout.flush()
            while self.next <= virtual_now:
                self.next += self.every

    def close(self) -> None:
        pass


def hour_params(
    nodes: int, virtual_s: float, evict_ping_after_s: float, refresh_s: float = DhtConfig.refresh_interval
) -> dict[str, Any]:
    return {
        "nodes": nodes,
        "join": "warm",
        "settle_s": 0.0,
        "duration_s": virtual_s,
        "lookups": max(2, int(virtual_s / 3.6)),  # 1,000 an hour
        "churn": "weibull:3600:0.5",
        "downtime": "exp:900",
        "sample_every_s": 60.0,
        "evict_ping_after_s": evict_ping_after_s,
        "refresh_s": refresh_s,
    }


def _hour(
    nodes: int, virtual_s: float, seed: int, every: float, evict: float, refresh: float = DhtConfig.refresh_interval
) -> dict[str, Any]:
    from simulations import scenarios
    from simulations.harness import Seeds
    from simulations.runner import resolve_params

    module = scenarios.load("dht")
    params = resolve_params(module, hour_params(nodes, virtual_s, evict, refresh))
    started, cpu_started = time.perf_counter(), time.process_time()
    tables = module.run(params, Seeds(seed), _Reporter(every))
    wall = time.perf_counter() - started
    # CPU time too: on a shared machine it shows the run's own cost when wall time is inflated by others.
    cpu = time.process_time() - cpu_started
    summary = module.summarize(tables)
    rss = _rss_mib()
    return {
        "mode": "hour",
        "nodes": nodes,
        "virtual_s": virtual_s,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_mib": rss,
        "meets_target": wall < TARGET_WALL_S * virtual_s / 3600.0 and rss < TARGET_RSS_MIB,
        "sessions": sum(p["sessions"] for p in tables["peers"]),
        "dials": sum(p["dials"] for p in tables["peers"]),
        **{
            k: summary[k]
            for k in (
                "lookups",
                "aborted",
                "find_peer_success",
                "closest_overlap_mean",
                "hops_p50",
                "hops_p99",
                "online_mean",
            )
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,500,1000,2000")
    parser.add_argument("--scenarios", default="netcheck,rpcping")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hour", action="store_true", help="the 10,000 peers x 1 virtual hour target")
    parser.add_argument("--nodes", type=int, default=10_000, help="--hour: peers")
    parser.add_argument("--virtual-s", type=float, default=3600.0, help="--hour: virtual seconds to run")
    parser.add_argument("--report-every", type=float, default=60.0, help="--hour: virtual seconds between reports")
    parser.add_argument(
        "--evict-ping-after-s", type=float, default=900.0, help="--hour: ping-before-evict threshold (production 900)"
    )
    parser.add_argument(
        "--refresh-s",
        type=float,
        default=DhtConfig.refresh_interval,
        help="--hour: bucket refresh interval (production %(default)g)",
    )
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    if args.hour:
        with context.Pool(1) as pool:
            job = (args.nodes, args.virtual_s, args.seed, args.report_every, args.evict_ping_after_s, args.refresh_s)
            result = pool.apply(_hour, job)
        print(json.dumps(result, indent=2))
        return
    results = []
    for scenario in args.scenarios.split(","):
        for nodes in (int(s) for s in args.sizes.split(",")):
            with context.Pool(1) as pool:
                result = pool.apply(_one, (scenario, nodes, args.seed))
            results.append(result)
            print(json.dumps(result))
    print(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
