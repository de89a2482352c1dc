"""dht: Kademlia lookups on the production DHT, as the network grows and churns.

Each peer runs an unmodified ``Host`` + ``Dht`` on its simulated endpoint
(``simulations.swarm``). With ``--join protocol`` peers join over
``join_spread_s`` through the bootstrap peer (peer 0, never churned) and one
random peer already online, then publish their peer record; with ``--join warm``
the swarm starts converged (tables and peer records from ground truth, each
bucket last refreshed at a random point of the last refresh interval), which
is how 10,000-peer runs fit in minutes. After ``settle_s`` the measurement
window opens: ``lookups`` lookups start at random times from random online
peers, half of each kind:

- ``find_peer``: resolve a random online peer's address through its signed peer
  record; ``ok`` = the right address came back;
- ``closest``: ``lookup_nodes`` on a random key; ``overlap`` = share of the true
  k closest online peers (ground truth from the simulator) that it returned;
  ``hops`` = the lookup's depth to the nearest peer that answered.

With ``--churn weibull:600:0.5`` (session length) and ``--downtime exp:300``,
peers other than the bootstrap leave (process exit: sockets closed) and return
with the same identity and an empty routing table, from the end of the join
phase on; their first session is a residual draw, so departures are spread out.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..harness import Knob, Progress, Seeds, World, percentile
from ..results import Tables, plot_cdf, plot_lines
from ..swarm import SWARM_KNOBS, Swarm, churn_schedules, dht_config, simulate_swarm

NAME = "dht"
QUESTION = (
    "How many hops and how much time do DHT lookups take, and how often are they right, as N grows and under churn?"
)
KNOBS: dict[str, Knob] = {
    "nodes": Knob(200, "number of simulated peers"),
    "one_way_ms": Knob(75.0, "one-way delay: the constant, or the largest across the plane for coords"),
    **SWARM_KNOBS,
    "join_spread_s": Knob(60.0, "join protocol: peers join at uniform random times over this many seconds"),
    "settle_s": Knob(60.0, "quiet time between the last join and the first measured lookup"),
    "duration_s": Knob(300.0, "length of the measurement window"),
    "lookups": Knob(200, "lookups in the window (half find_peer, half closest)"),
    "sample_every_s": Knob(10.0, "how often the timeline table samples the online count"),
}
#: Virtual time at which a warm start fills the tables (every peer is listening by then).
WARM_AT = 0.001


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    nodes = params["nodes"]
    if nodes < 2:
        raise ValueError("the dht scenario needs at least 2 nodes")
    if params["join"] not in ("protocol", "warm"):
        raise ValueError("--join is protocol or warm")
    warm = params["join"] == "warm"
    world = World.from_params(params, seeds)
    swarm = Swarm(world, nodes, dht_config=dht_config(params), prefix="dht")
    ids, ips, online = swarm.ids, swarm.ips, swarm.online
    join_end = WARM_AT if warm else params["join_spread_s"]
    window_start = join_end + params["settle_s"]
    window_end = window_start + params["duration_s"]
    progress.set_total(window_end)

    lookup_rows: list[dict[str, Any] | None] = [None] * params["lookups"]
    timeline: list[dict[str, Any]] = []
    rng_join = seeds.rng("dht/join")
    join_at = [0.0] + [0.0 if warm else rng_join.uniform(0.0, join_end) for _ in range(1, nodes)]
    schedules = churn_schedules(params, seeds, nodes, join_end, window_end, "dht")

    async def lookup(n: int, src: int, kind: str, target: Any, truth: set[Any], started: float) -> None:
        dht = online[src].dht
        row = {
            "t_s": started,
            "src": ips[src],
            "kind": kind,
            "online": len(online),
            "ok": 0,
            "aborted": 1,
            "hops": 0,
            "queries": 0,
            "failures": 0,
            "elapsed_s": math.nan,
            "overlap": math.nan,
        }
        lookup_rows[n] = row
        if kind == "find_peer":
            addresses = await dht.find_peer(ids[target])
            row["ok"] = int(swarm.addresses[target] in addresses)
        else:
            result = await dht.lookup_nodes(target)
            got = {c.peer_id for c in result.closest}
            row.update(hops=result.hops, queries=result.queries, failures=result.failures)
            row["overlap"] = len(got & truth) / len(truth) if truth else math.nan
            row["ok"] = int(row["overlap"] == 1.0)
        row["aborted"] = 0
        row["elapsed_s"] = trio.current_time() - started

    async def lookups() -> None:
        rng = seeds.rng("dht/lookups")
        plan = sorted(rng.uniform(window_start, window_end) for _ in range(params["lookups"]))
        for n, at in enumerate(plan):
            await trio.sleep_until(at)
            live = sorted(online)
            if len(live) < 2:
                continue
            src = live[rng.randrange(len(live))]
            if n % 2 == 0:
                target = live[rng.randrange(len(live))]
                while target == src:
                    target = live[rng.randrange(len(live))]
                kind, truth = "find_peer", set()
            else:
                key = rng.randbytes(32)
                nearest = swarm.closest(int.from_bytes(key, "big"), live, params["k"], exclude=src)
                kind, target, truth = "closest", key, {ids[j] for j in nearest}
            # In the source's own nursery, so the lookup dies with its peer (row stays aborted).
            online[src].nursery.start_soon(lookup, n, src, kind, target, truth, trio.current_time())

    async def sampler() -> None:
        while True:
            total = world.network.total_stats()
            timeline.append(
                {
                    "t_s": trio.current_time(),
                    "online": len(online),
                    "dials": total.dials,
                    "bytes_sent": total.bytes_sent,
                    "open_connections": world.network.open_connections,
                }
            )
            await trio.sleep(params["sample_every_s"])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                # A warm start means "already joined"; later sessions (after churn) always join by protocol.
                nursery.start_soon(partial(swarm.life, i, join_at[i], schedules[i], join=not warm))
            if warm:
                await trio.sleep_until(WARM_AT)
                swarm.warm_up(seeds.rng("dht/warm"), trio.current_time())
            nursery.start_soon(sampler)
            await lookups()
            await trio.sleep_until(window_end + 4 * params["query_timeout"])  # let the last lookups finish
            nursery.cancel_scope.cancel()

    simulate_swarm(main, seeds=seeds, progress=progress)
    rows = [row for row in lookup_rows if row is not None]
    peers = [{"host": ip, "sessions": swarm.sessions[i], **vars(world.network.stats(ip))} for i, ip in enumerate(ips)]
    return {"rows": rows, "timeline": timeline, "peers": peers}


def summarize(tables: Tables) -> dict[str, Any]:
    rows = tables["rows"]
    done = [r for r in rows if not r["aborted"]]
    finds = [r for r in done if r["kind"] == "find_peer"]
    closest = [r for r in done if r["kind"] == "closest"]
    elapsed = [r["elapsed_s"] for r in done]
    hops = [r["hops"] for r in closest]
    online = [s["online"] for s in tables["timeline"]]
    return {
        "lookups": len(rows),
        "aborted": len(rows) - len(done),
        "find_peer_success": sum(r["ok"] for r in finds) / len(finds) if finds else math.nan,
        "closest_overlap_mean": sum(r["overlap"] for r in closest) / len(closest) if closest else math.nan,
        "closest_exact": sum(r["ok"] for r in closest) / len(closest) if closest else math.nan,
        "hops_mean": sum(hops) / len(hops) if hops else math.nan,
        "hops_p50": percentile(hops, 50),
        "hops_p90": percentile(hops, 90),
        "hops_p99": percentile(hops, 99),
        "hops_max": max(hops, default=0),
        "queries_mean": sum(r["queries"] for r in closest) / len(closest) if closest else math.nan,
        "latency_p50_s": percentile(elapsed, 50),
        "latency_p90_s": percentile(elapsed, 90),
        "latency_p99_s": percentile(elapsed, 99),
        "online_mean": sum(online) / len(online) if online else math.nan,
        "bytes_sent": sum(p["bytes_sent"] for p in tables["peers"]),
    }


def plot(tables: Tables, out_dir: Path) -> list[Path]:
    done = [r for r in tables["rows"] if not r["aborted"]]
    timeline = tables["timeline"]
    return [
        plot_cdf(
            out_dir / "lookup_latency_cdf.png",
            {kind: [r["elapsed_s"] for r in done if r["kind"] == kind] for kind in ("find_peer", "closest")},
            xlabel="lookup time (virtual s)",
            title="dht: lookup latency",
        ),
        plot_cdf(
            out_dir / "hops_cdf.png",
            {"closest": [float(r["hops"]) for r in done if r["kind"] == "closest"]},
            xlabel="hops to the nearest answering peer",
            title="dht: lookup hops",
        ),
        plot_lines(
            out_dir / "online.png",
            [s["t_s"] for s in timeline],
            {"online peers": [s["online"] for s in timeline]},
            xlabel="virtual time (s)",
            ylabel="peers online",
            title="dht: population over time",
        ),
    ]
