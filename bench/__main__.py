"""`python -m bench [name ...]`: run the benchmarks (all by default) and print their figures.

Every benchmark measures its baseline in the same run and prints the ratio; the machines are
shared and noisy, so the figures are for reading, never for pass/fail in tests.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

BENCHES = [
    "bench_handshake",
    "bench_transport",
    "bench_dht",
    "bench_gossip",
    "bench_auction",
    "bench_inference",
    "bench_network_inference",
    "bench_payments",
]


def main(argv: list[str]) -> int:
    names = argv or BENCHES
    results = {}
    for name in names:
        module = importlib.import_module(f"bench.{name.removeprefix('bench.')}")
        print(f"\n### {name}", flush=True)
        started = time.perf_counter()
        results[name] = module.run()
        print(f"({time.perf_counter() - started:.0f} s)")
    print("\n" + json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
