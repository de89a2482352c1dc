"""gossip: RFQ-like messages on one topic among N subscribers, on the production gossip layer.

Every peer runs an unmodified ``Host`` + ``Dht`` + ``Gossip`` (``simulations.swarm``)
and subscribes to one topic (``rfq/sim-model``); subscribers find mesh candidates
through the DHT, as in production. After ``warmup_s`` the ``publishers`` (random
peers, kept online) publish ``messages`` messages in turn, ``spacing_s`` apart,
each ``payload`` bytes (about an RFQ's size). For each message the scenario
records which subscribers got it within ``deadline_s``, after how many relays
(``hops``, carried in the message) and how long, and how many copies each peer
received (every copy that arrived over the wire, duplicates included: counted by
wrapping the ``gossip.rpc`` handler, which the protocol code never sees).

A subscriber is *eligible* for a message when its session covers the whole
``[publish, publish + deadline_s]`` interval; reach = share of eligible
subscribers (publisher excluded) that got it. Under churn a peer that has just
come back counts as eligible as soon as it is online again, so reach includes
the time it needs to rejoin the DHT and the mesh.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..harness import Knob, Progress, Seeds, World, percentile
from ..results import Tables, plot_cdf, plot_lines
from ..swarm import SWARM_KNOBS, Peer, Swarm, churn_schedules, dht_config, simulate_swarm

NAME = "gossip"
QUESTION = (
    "How completely and in how many hops does an RFQ-sized message reach a topic's subscribers, "
    "and how many copies does each peer receive, as N, mesh degree D and churn vary?"
)
KNOBS: dict[str, Knob] = {
    "nodes": Knob(200, "number of simulated peers, all subscribed to the topic"),
    "one_way_ms": Knob(50.0, "one-way delay: the constant, or the largest across the plane for coords"),
    **SWARM_KNOBS,
    "join": Knob("warm", "protocol: peers bootstrap through the DHT; warm: DHT starts converged"),
    "join_spread_s": Knob(30.0, "join protocol: peers join at uniform random times over this many seconds"),
    "d": Knob(6, "mesh degree D (D_lo = 2D/3, D_hi = 2D, D_lazy = D, as the defaults 6/4/12/6)"),
    "publishers": Knob(5, "peers that publish (kept online under churn)"),
    "messages": Knob(20, "messages in all, published in turn by the publishers"),
    "payload": Knob(300, "bytes of data per message (an RFQ is about 300)"),
    "warmup_s": Knob(30.0, "time between subscribing and the first message (mesh formation)"),
    "spacing_s": Knob(2.0, "time between two messages"),
    "deadline_s": Knob(10.0, "a copy arriving later than this after publishing counts as a miss"),
    "max_connections": Knob(512, "connections per peer (the production default is 512)"),
}
TOPIC = "rfq/sim-model"
WARM_AT = 0.001
TAG = b"sim-msg:"


def gossip_config(d: int) -> Any:
    from cocoon_p2p.gossip import GossipConfig

    return GossipConfig(d=d, d_lo=max(1, 2 * d // 3), d_hi=2 * d, d_score=min(4, d), d_lazy=d)


def message_index(data: Any) -> int | None:
    if isinstance(data, bytes) and data.startswith(TAG):
        return int.from_bytes(data[len(TAG) : len(TAG) + 4], "big")
    return None


def count_copies(peer: Peer, copies: Counter[tuple[int, int]]) -> None:
    """Wrap the peer's ``gossip.rpc`` handler to count every message copy that arrives."""
    from cocoon_p2p.gossip import RPC_METHOD

    handlers = peer.host.router.unary_handlers
    inner = handlers[RPC_METHOD]

    async def counted(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        msgs = params.get("msgs") if isinstance(params, dict) else None
        if isinstance(msgs, list):
            for wire in msgs:
                n = message_index(wire.get("data")) if isinstance(wire, dict) else None
                if n is not None:
                    copies[(n, peer.index)] += 1
        return await inner(ctx, params)

    handlers[RPC_METHOD] = counted


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    from cocoon_p2p.gossip import Gossip
    from cocoon_p2p.wire.limits import Limits

    nodes, n_msgs = params["nodes"], params["messages"]
    n_pub = min(params["publishers"], nodes - 1)
    if nodes < 3 or n_pub < 1:
        raise ValueError("the gossip scenario needs at least 3 nodes and 1 publisher")
    warm = params["join"] == "warm"
    world = World.from_params(params, seeds)
    config = gossip_config(params["d"])
    join_end = WARM_AT if warm else params["join_spread_s"]
    first_at = join_end + params["warmup_s"]
    publish_at = [first_at + n * params["spacing_s"] for n in range(n_msgs)]
    end = (publish_at[-1] if publish_at else first_at) + params["deadline_s"]
    progress.set_total(end)
    rng = seeds.rng("gossip/plan")
    publishers = sorted(rng.sample(range(1, nodes), n_pub))
    origins = [publishers[n % n_pub] for n in range(n_msgs)]
    schedules = churn_schedules(params, seeds, nodes, join_end, end, "gossip", keep=(0, *publishers))
    join_at = [0.0] + [0.0 if warm else rng.uniform(0.0, join_end) for _ in range(1, nodes)]

    copies: Counter[tuple[int, int]] = Counter()
    firsts: dict[tuple[int, int], tuple[float, int]] = {}  # (msg, peer) -> (latency, hops)
    redelivered: Counter[int] = Counter()
    published: dict[int, float] = {}
    final_state: dict[int, dict[str, Any]] = {}

    async def drain(peer: Peer, channel: Any) -> None:
        async for msg in channel:
            n = message_index(msg.data)
            if n is None or n not in published:
                continue
            if (n, peer.index) in firsts:
                redelivered[n] += 1
                continue
            firsts[(n, peer.index)] = (trio.current_time() - published[n], msg.hops)

    async def build(peer: Peer) -> None:
        gossip = Gossip(peer.host, peer.dht, world.wall, seeds.rng(f"gossip/peer/{peer.index}/{peer.session}"), config)
        await peer.nursery.start(gossip.run)
        peer.extra["gossip"] = gossip
        count_copies(peer, copies)

    async def ready(peer: Peer) -> None:
        channel = peer.extra["gossip"].subscribe(TOPIC)
        peer.nursery.start_soon(drain, peer, channel)

    swarm = Swarm(
        world,
        nodes,
        dht_config=dht_config(params),
        prefix="gossip",
        limits=Limits(max_connections=params["max_connections"]),
        build=build,
        ready=ready,
    )

    async def publisher() -> None:
        data_rng = seeds.rng("gossip/data")
        pad = max(0, params["payload"] - len(TAG) - 4)
        for n, at in enumerate(publish_at):
            await trio.sleep_until(at)
            peer = swarm.online[origins[n]]
            published[n] = trio.current_time()
            data = TAG + n.to_bytes(4, "big") + data_rng.randbytes(pad)
            peer.nursery.start_soon(peer.extra["gossip"].publish, TOPIC, data)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                nursery.start_soon(partial(swarm.life, i, join_at[i], schedules[i], join=not warm))
            if warm:
                await trio.sleep_until(WARM_AT)
                swarm.warm_up(seeds.rng("gossip/warm"), trio.current_time())
                await swarm.start_ready()
            await publisher()
            await trio.sleep_until(end)
            for i, peer in sorted(swarm.online.items()):
                g = peer.extra["gossip"]
                final_state[i] = {"mesh": len(g.mesh_peers(TOPIC)), **_metrics(g)}
            nursery.cancel_scope.cancel()

    simulate_swarm(main, seeds=seeds, progress=progress)
    covered = [_online_over(schedules[i]) for i in range(nodes)]
    deliveries, rows = [], []
    for n in range(n_msgs):
        t0 = published.get(n)
        if t0 is None:
            continue
        eligible = [i for i in range(nodes) if i != origins[n] and covered[i](t0, t0 + params["deadline_s"])]
        got: list[tuple[float, int]] = []
        for i in eligible:
            first = firsts.get((n, i))
            ok = first is not None and first[0] <= params["deadline_s"]
            deliveries.append(
                {
                    "msg": n,
                    "peer": i,
                    "got": int(ok),
                    "hops": first[1] if first else -1,
                    "latency_s": first[0] if first else math.nan,
                    "copies": copies[(n, i)],
                }
            )
            if ok and first is not None:
                got.append(first)
        hops = [h for _, h in got]
        lat = [t for t, _ in got]
        cps = [copies[(n, i)] for i in eligible]
        rows.append(
            {
                "msg": n,
                "origin": origins[n],
                "t_s": t0,
                "eligible": len(eligible),
                "reached": len(got),
                "reach": len(got) / len(eligible) if eligible else math.nan,
                "hops_p50": percentile(hops, 50),
                "hops_p99": percentile(hops, 99),
                "hops_max": max(hops, default=-1),
                "latency_p50_s": percentile(lat, 50),
                "latency_p99_s": percentile(lat, 99),
                "copies_mean": statistics.fmean(cps) if cps else math.nan,
                "copies_max": max(cps, default=0),
                "redelivered": redelivered[n],
            }
        )
    peers = [
        {
            "peer": i,
            "sessions": swarm.sessions[i],
            "publisher": int(i in publishers),
            **final_state.get(i, {"mesh": -1, **dict.fromkeys(_METRICS, 0)}),
            **vars(world.network.stats(swarm.ips[i])),
        }
        for i in range(nodes)
    ]
    return {"rows": rows, "deliveries": deliveries, "peers": peers}


_METRICS = ("received", "delivered", "duplicates", "forwarded", "invalid", "rpc_failed", "queue_dropped")


def _metrics(gossip: Any) -> dict[str, int]:
    return {name: gossip.metrics.get(name) for name in _METRICS}


def _online_over(intervals: list[tuple[float, float]]) -> Any:
    """``covers(a, b)``: is the peer online for the whole of [a, b]? ([] = always online.)"""

    def covers(a: float, b: float) -> bool:
        if not intervals:
            return True
        return any(start <= a and b <= stop for start, stop in intervals)

    return covers


def summarize(tables: Tables) -> dict[str, Any]:
    rows = tables["rows"]
    done = tables["deliveries"]
    got = [d for d in done if d["got"]]
    hops = [d["hops"] for d in got]
    meshes = [p["mesh"] for p in tables["peers"] if p["mesh"] >= 0]
    return {
        "messages": len(rows),
        "reach_mean": statistics.fmean(r["reach"] for r in rows) if rows else math.nan,
        "reach_min": min((r["reach"] for r in rows), default=math.nan),
        "within_5_hops": sum(1 for h in hops if h <= 5) / len(done) if done else math.nan,
        "hops_p50": percentile(hops, 50),
        "hops_p99": percentile(hops, 99),
        "latency_p50_s": percentile([d["latency_s"] for d in got], 50),
        "latency_p99_s": percentile([d["latency_s"] for d in got], 99),
        "copies_per_peer": statistics.fmean(d["copies"] for d in done) if done else math.nan,
        "copies_max": max((d["copies"] for d in done), default=0),
        "redelivered": sum(r["redelivered"] for r in rows),
        "mesh_mean": statistics.fmean(meshes) if meshes else math.nan,
        "bytes_sent": sum(p["bytes_sent"] for p in tables["peers"]),
    }


def plot(tables: Tables, out_dir: Path) -> list[Path]:
    done = tables["deliveries"]
    rows = tables["rows"]
    return [
        plot_cdf(
            out_dir / "hops_cdf.png",
            {"hops": [float(d["hops"]) for d in done if d["got"]]},
            xlabel="relays before the first copy arrived",
            title=f"gossip: hops ({len(rows)} messages)",
        ),
        plot_cdf(
            out_dir / "copies_cdf.png",
            {"copies per peer per message": [float(d["copies"]) for d in done]},
            xlabel="copies received (duplicates included)",
            title="gossip: copies per peer",
        ),
        plot_lines(
            out_dir / "reach.png",
            [r["msg"] for r in rows],
            {"reach": [r["reach"] for r in rows]},
            xlabel="message",
            ylabel="share of eligible subscribers reached",
            title="gossip: reach per message",
        ),
    ]
