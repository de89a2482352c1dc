"""dht: Kademlia lookups on the production DHT, as the network grows and churns.

Each peer runs an unmodified ``Host`` + ``Dht`` on its simulated endpoint. Peers
join over ``join_spread_s`` through the bootstrap peer (peer 0, never churned)
and one random peer already online, then publish their peer record. After
``settle_s`` the measurement window opens: ``lookups`` lookups start at random
times from random online peers, half of each kind:

- ``find_peer``: resolve a random online peer's address through its signed peer
  record; ``ok`` = the right address came back;
- ``closest``: ``lookup_nodes`` on a random key; ``overlap`` = share of the true
  k closest online peers (ground truth from the simulator) that it returned.

With ``--churn weibull:600:0.5`` (session length) and ``--downtime exp:300``,
peers other than the bootstrap leave (process exit: sockets closed) and return
with the same identity and an empty routing table, from the end of the join
phase on; their first session is a residual draw, so departures are spread out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import trio

from ..churn import ChurnModel, parse_distribution
from ..harness import Knob, Progress, Seeds, World, percentile, simulate
from ..results import Tables, plot_cdf, plot_lines

NAME = "dht"
QUESTION = (
    "How many hops and how much time do DHT lookups take, and how often are they right, as N grows and under churn?"
)
KNOBS: dict[str, Knob] = {
    "nodes": Knob(200, "number of simulated peers"),
    "one_way_ms": Knob(75.0, "one-way delay: the constant, or the largest across the plane for coords"),
    "join_spread_s": Knob(60.0, "peers join at uniform random times over this many seconds"),
    "settle_s": Knob(60.0, "quiet time between the last join and the first measured lookup"),
    "duration_s": Knob(300.0, "length of the measurement window"),
    "lookups": Knob(200, "lookups in the window (half find_peer, half closest)"),
    "churn": Knob("none", "session-time distribution, e.g. weibull:600:0.5, exp:600, pareto:600:2; none = no churn"),
    "downtime": Knob("exp:300", "offline-time distribution between sessions (with --churn)"),
    "k": Knob(20, "Kademlia k (bucket size, lookup width)"),
    "alpha": Knob(3, "lookup queries in flight"),
    "query_timeout": Knob(3.0, "seconds before one DHT query counts as failed"),
    "sample_every_s": Knob(10.0, "how often the timeline table samples the online count"),
}
PORT = 7400


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    from cocoon_p2p.dht import Dht, DhtConfig
    from cocoon_p2p.rpc import Host

    nodes = params["nodes"]
    if nodes < 2:
        raise ValueError("the dht scenario needs at least 2 nodes")
    world = World.from_params(params, seeds)
    config = DhtConfig(k=params["k"], alpha=params["alpha"], query_timeout=params["query_timeout"])
    ips = [world.ip(i) for i in range(nodes)]
    identities = [world.identity(i) for i in range(nodes)]
    ids = [identity.peer_id for identity in identities]
    join_end = params["join_spread_s"]
    window_start = join_end + params["settle_s"]
    window_end = window_start + params["duration_s"]
    progress.set_total(window_end)

    online: dict[int, tuple[Dht, trio.Nursery]] = {}
    sessions = [0] * nodes
    lookup_rows: list[dict[str, Any] | None] = [None] * params["lookups"]
    timeline: list[dict[str, Any]] = []
    rng_join = seeds.rng("dht/join")
    join_at = [0.0] + [rng_join.uniform(0.0, join_end) for _ in range(1, nodes)]
    schedules = _churn_schedules(params, seeds, nodes, join_end, window_end)

    async def session(i: int, index: int) -> None:
        endpoint = world.network.endpoint(ips[i])
        host = Host(identities[i], endpoint, listen=f"{ips[i]}:{PORT}")
        dht = Dht(host, world.wall, config=config, rng=seeds.rng(f"dht/peer/{i}/{index}"))
        sessions[i] += 1
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                await nursery.start(dht.run)
                online[i] = (dht, nursery)
                if i != 0:
                    # Bootstrap through peer 0 and one random peer already online.
                    others = sorted(j for j in online if j not in (0, i))
                    pick = seeds.rng(f"dht/boot/{i}/{index}")
                    entries = [0] + ([others[pick.randrange(len(others))]] if others else [])
                    await dht.bootstrap([(ids[j], f"{ips[j]}:{PORT}") for j in entries])
                await dht.publish_self()
                await trio.sleep_forever()
        finally:
            online.pop(i, None)
            endpoint.crash()  # whatever the cancelled tasks left open goes with the process

    async def peer_life(i: int) -> None:
        await trio.sleep(join_at[i])
        with trio.move_on_at(schedules[i][0][1] if schedules[i] else math.inf):
            await session(i, 0)
        for index, (start, end) in enumerate(schedules[i][1:], start=1):
            await trio.sleep_until(start)
            with trio.move_on_at(end):
                await session(i, index)

    async def lookup(n: int, src: int, kind: str, target: Any, truth: set[Any], started: float) -> None:
        dht = online[src][0]
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
            row["ok"] = int(f"{ips[target]}:{PORT}" in addresses)
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
                key_int = int.from_bytes(key, "big")
                nearest = sorted((j for j in live if j != src), key=lambda j: ids[j].as_int ^ key_int)
                kind, target, truth = "closest", key, {ids[j] for j in nearest[: params["k"]]}
            # In the source's own nursery, so the lookup dies with its peer (row stays aborted).
            online[src][1].start_soon(lookup, n, src, kind, target, truth, trio.current_time())

    async def sampler() -> None:
        while True:
            timeline.append({"t_s": trio.current_time(), "online": len(online)})
            await trio.sleep(params["sample_every_s"])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            for i in range(nodes):
                nursery.start_soon(peer_life, i)
            await lookups()
            await trio.sleep_until(window_end + 4 * params["query_timeout"])  # let the last lookups finish
            nursery.cancel_scope.cancel()

    simulate(main, seeds=seeds, progress=progress)
    rows = [row for row in lookup_rows if row is not None]
    peers = [{"host": ip, "sessions": sessions[i], **vars(world.network.stats(ip))} for i, ip in enumerate(ips)]
    return {"rows": rows, "timeline": timeline, "peers": peers}


def _churn_schedules(
    params: dict[str, Any], seeds: Seeds, nodes: int, start: float, end: float
) -> list[list[tuple[float, float]]]:
    """Online intervals per peer from ``start`` (the end of joining) on; [] = always online."""
    if params["churn"] == "none":
        return [[] for _ in range(nodes)]
    model = ChurnModel(parse_distribution(params["churn"]), parse_distribution(params["downtime"]))
    schedules: list[list[tuple[float, float]]] = [[]]  # the bootstrap peer stays
    for i in range(1, nodes):
        intervals = model.schedule(seeds.rng(f"dht/churn/{i}"), end - start, start_online=True)
        schedules.append([(start + a, start + b) for a, b in intervals] or [(start, start)])
    return schedules


def summarize(tables: Tables) -> dict[str, Any]:
    rows = tables["rows"]
    done = [r for r in rows if not r["aborted"]]
    finds = [r for r in done if r["kind"] == "find_peer"]
    closest = [r for r in done if r["kind"] == "closest"]
    elapsed = [r["elapsed_s"] for r in done]
    online = [s["online"] for s in tables["timeline"]]
    return {
        "lookups": len(rows),
        "aborted": len(rows) - len(done),
        "find_peer_success": sum(r["ok"] for r in finds) / len(finds) if finds else math.nan,
        "closest_overlap_mean": sum(r["overlap"] for r in closest) / len(closest) if closest else math.nan,
        "closest_exact": sum(r["ok"] for r in closest) / len(closest) if closest else math.nan,
        "hops_p50": percentile([r["hops"] for r in closest], 50),
        "hops_p90": percentile([r["hops"] for r in closest], 90),
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
