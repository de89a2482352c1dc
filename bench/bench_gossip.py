"""Gossip propagation among many subscribers on the in-memory network, in virtual time.

Every peer runs the real stack (Noise-secured RPC, Kademlia DHT, gossip) over
``simulations.network.SimNetwork`` under trio's MockClock, so a 1,000-peer swarm
fits in one process and the figures do not depend on the machine's speed. Peers
join through the DHT, all subscribe to one topic (finding mesh candidates through
the DHT), then a few random subscribers publish one message each.

Figures, per message and then pooled:
- reach: share of subscribers (publisher excluded) that got the message at all,
  and within 5 hops (the hop count travels with each copy; a relay increments it);
- copies: every copy a peer received, duplicates included, averaged over peers.

The issue's targets: 99 % reached within 5 hops, at most 8 copies per peer on average.
Run ``python -m bench.bench_gossip [--nodes 1000] [--messages 5] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import trio

from cocoon_p2p.dht import Dht
from cocoon_p2p.gossip import Gossip, GossipConfig, GossipMessage
from cocoon_p2p.rpc import Host
from simulations.harness import Seeds, World, percentile, simulate
from simulations.latency import ConstantLatency
from simulations.network import SimNetwork

TOPIC = "rfq/bench-model"
HOP_TARGET = 5
COPIES_TARGET = 8.0


async def _drain(channel: trio.MemoryReceiveChannel[GossipMessage], sink: dict[bytes, int]) -> None:
    async for msg in channel:
        if msg.msg_id in sink:
            sink[msg.msg_id] = -1  # delivered twice: a dedup failure, reported below
        else:
            sink[msg.msg_id] = msg.hops


def run(
    nodes: int = 1000,
    messages: int = 5,
    seed: int = 1,
    one_way_ms: float = 25.0,
    join_spread: float = 60.0,
    warmup: float = 30.0,
    spacing: float = 5.0,
) -> dict[str, Any]:
    """Build the swarm, publish ``messages`` messages, and return the figures."""
    seeds = Seeds(seed)
    world = World(SimNetwork(ConstantLatency(one_way_ms / 1000.0), rng=seeds.rng("network")), seeds)
    config = GossipConfig()
    rng = seeds.rng("bench")
    started = time.perf_counter()

    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            gossips: list[Gossip] = []
            for i in range(nodes):
                host = Host(world.identity(i), world.endpoint(i))
                await nursery.start(host.run)
                dht = Dht(host, world.wall, rng=seeds.rng(f"dht/{i}"))
                await nursery.start(dht.run)
                gossip = Gossip(host, dht, world.wall, seeds.rng(f"gossip/{i}"), config)
                await nursery.start(gossip.run)
                gossips.append(gossip)
            received: list[dict[bytes, int]] = [{} for _ in range(nodes)]

            async def join(i: int, delay: float, bootstrap: list[int]) -> None:
                await trio.sleep(delay)
                if bootstrap:
                    entries = [(gossips[j].peer_id, gossips[j].host.listen_address) for j in bootstrap]
                    await gossips[i].dht.bootstrap(entries)
                nursery.start_soon(_drain, gossips[i].subscribe(TOPIC), received[i])

            async with trio.open_nursery() as joining:
                for i in range(nodes):
                    # Peer 0 is the well-known bootstrap node; the others know it and one random earlier peer.
                    entries = sorted({0, rng.randrange(i)}) if i else []
                    joining.start_soon(join, i, rng.uniform(0, join_spread) if i else 0.0, entries)
            joined_at = trio.current_time()
            await trio.sleep(warmup)
            mesh_sizes = [len(g.mesh_peers(TOPIC)) for g in gossips]

            per_message = []
            for _ in range(messages):
                origin = rng.randrange(nodes)
                before = [g.metrics.get("received", TOPIC) for g in gossips]
                msg_id = await gossips[origin].publish(TOPIC, rng.randbytes(256))
                await trio.sleep(spacing)
                copies = [g.metrics.get("received", TOPIC) - b for g, b in zip(gossips, before, strict=True)]
                hops = [received[i].get(msg_id) for i in range(nodes) if i != origin]
                got = [h for h in hops if h is not None and h >= 0]
                per_message.append(
                    {
                        "origin": origin,
                        "reached": len(got) / len(hops),
                        "within_target_hops": sum(1 for h in got if h <= HOP_TARGET) / len(hops),
                        "hops_p50": percentile(got, 50),
                        "hops_p99": percentile(got, 99),
                        "hops_max": max(got, default=0),
                        "redelivered": sum(1 for h in hops if h == -1),
                        "copies_mean": statistics.fmean(copies[i] for i in range(nodes) if i != origin),
                        "copies_max": max(copies),
                    }
                )
            totals = [g.metrics for g in gossips]
            nursery.cancel_scope.cancel()
        return {
            "joined_at_virtual_s": joined_at,
            "mesh_mean": statistics.fmean(mesh_sizes),
            "mesh_min": min(mesh_sizes),
            "mesh_max": max(mesh_sizes),
            "per_message": per_message,
            "rpc_failed": sum(m.get("rpc_failed") for m in totals),
            "queue_dropped": sum(m.get("queue_dropped") for m in totals),
            "invalid": sum(m.get("invalid") for m in totals),
        }

    result = simulate(main, seeds=seeds)
    pm = result["per_message"]
    result.update(
        nodes=nodes,
        messages=messages,
        seed=seed,
        one_way_ms=one_way_ms,
        reached=min(m["reached"] for m in pm),
        within_5_hops=statistics.fmean(m["within_target_hops"] for m in pm),
        hops_p99=max(m["hops_p99"] for m in pm),
        copies_per_peer=statistics.fmean(m["copies_mean"] for m in pm),
        redelivered=sum(m["redelivered"] for m in pm),
        wall_s=round(time.perf_counter() - started, 1),
    )
    result["meets_targets"] = result["within_5_hops"] >= 0.99 and result["copies_per_peer"] <= COPIES_TARGET
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--one-way-ms", type=float, default=25.0)
    args = parser.parse_args()
    result = run(nodes=args.nodes, messages=args.messages, seed=args.seed, one_way_ms=args.one_way_ms)
    print(json.dumps({k: v for k, v in result.items() if k != "per_message"}, indent=2))
    for m in result["per_message"]:
        print(
            f"  origin {m['origin']:4d}: reached {m['reached']:.3f}, <=5 hops {m['within_target_hops']:.3f}, "
            f"hops p50/p99/max {m['hops_p50']}/{m['hops_p99']}/{m['hops_max']}, copies mean {m['copies_mean']:.2f}"
        )


if __name__ == "__main__":
    main()
