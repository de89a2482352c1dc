"""How far the simulator scales in one process: wall time and memory per peer count.

Runs the ``netcheck`` scenario (bare SimNetwork streams) and the ``rpcping``
scenario (real Hosts: Noise XX handshakes, msgpack RPC) at growing sizes, each in
a fresh process so peak memory is per run. Virtual-time results are identical on
any machine; the wall times and MiB figures are this machine's.

Run ``python -m bench.bench_sim_scale [--sizes 250,500,1000,2000] [--scenarios netcheck,rpcping]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from typing import Any


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
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ok": summary.get("echoes", summary.get("calls_ok")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,500,1000,2000")
    parser.add_argument("--scenarios", default="netcheck,rpcping")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
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
