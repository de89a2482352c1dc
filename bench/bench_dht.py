"""DHT lookups: ours against the `kademlia` package, same k, α and peer count, same run.

Both networks run on loopback in this process (ours: trio + TCP + Noise; theirs: asyncio +
UDP), each peer bootstrapping from the first and one random earlier peer. Each lookup asks a
random peer for the id of another random peer; success = the peer closest to the target
(other than the target itself, which `kademlia` never returns for its own id) is among the
contacts returned. Both networks first run the same number of untimed warm-up lookups, as a
network that has been up for a while would have (for us: pooled Noise connections).
Figures: median and p99 latency, success rate, messages (queries) per lookup.
Target (issue: DHT): our median ≥ 2× faster, success ≥ 99 %.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time

import trio

PEERS = 200
LOOKUPS = 300
K, ALPHA = 20, 3


def _true_nearest(target: int, everyone: list[int]) -> int:
    return min((i for i in everyone if i != target), key=lambda i: i ^ target)


def _summary(latencies: list[float], successes: int, messages: list[int]) -> dict:
    ordered = sorted(latencies)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
        "success": round(successes / len(latencies), 4),
        "messages_per_lookup": round(statistics.mean(messages), 1),
    }


async def _ours() -> dict:
    from cocoon_p2p.dht import DhtConfig
    from cocoon_p2p.wire.limits import Limits
    from tests.dht.helpers import dht_network

    rng = random.Random(5)
    # All 200 peers share this process's descriptors; each keeps its 48 most recently used links.
    async with dht_network(PEERS, DhtConfig(k=K, alpha=ALPHA), limits=Limits(max_connections=48)) as peers:
        everyone = [p.host.peer_id.as_int for p in peers]
        for _ in range(LOOKUPS):  # warm-up, untimed
            searcher, target = rng.sample(peers, 2)
            await searcher.dht.lookup_nodes(target.host.peer_id.raw)
        latencies, messages, successes = [], [], 0
        for _ in range(LOOKUPS):
            searcher, target = rng.sample(peers, 2)
            started = time.perf_counter()
            result = await searcher.dht.lookup_nodes(target.host.peer_id.raw)
            latencies.append(time.perf_counter() - started)
            messages.append(result.queries)
            nearest = _true_nearest(target.host.peer_id.as_int, everyone)
            successes += any(c.peer_id.as_int == nearest for c in result.closest)
    return _summary(latencies, successes, messages)


async def _theirs() -> dict:
    from kademlia.crawling import NodeSpiderCrawl
    from kademlia.network import Server
    from kademlia.node import Node

    logging.getLogger("kademlia").setLevel(logging.ERROR)
    rng = random.Random(5)
    servers = []
    base = 43000 + rng.randrange(2000)
    for i in range(PEERS):
        server = Server(ksize=K, alpha=ALPHA)
        await server.listen(base + i, interface="127.0.0.1")
        servers.append(server)
    for i, server in enumerate(servers[1:], start=1):
        await server.bootstrap([("127.0.0.1", base), ("127.0.0.1", base + rng.randrange(i))])
    for server in servers:
        await server.bootstrap([("127.0.0.1", base)])
    calls = 0
    for server in servers:
        original = server.protocol.call_find_node

        async def counted(*args, _original=original):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await _original(*args)

        server.protocol.call_find_node = counted
    everyone = [s.node.long_id for s in servers]
    for _ in range(LOOKUPS):  # warm-up, untimed
        searcher, target = rng.sample(servers, 2)
        node = Node(target.node.id)
        await NodeSpiderCrawl(
            searcher.protocol, node, searcher.protocol.router.find_neighbors(node, ALPHA), K, ALPHA
        ).find()
    latencies, messages, successes = [], [], 0
    for _ in range(LOOKUPS):
        searcher, target = rng.sample(servers, 2)
        node = Node(target.node.id)
        before = calls
        started = time.perf_counter()
        nearest = searcher.protocol.router.find_neighbors(node, ALPHA)
        found = await NodeSpiderCrawl(searcher.protocol, node, nearest, K, ALPHA).find()
        latencies.append(time.perf_counter() - started)
        messages.append(calls - before)
        nearest = _true_nearest(target.node.long_id, everyone)
        successes += any(n.long_id == nearest for n in found)
    for server in servers:
        server.stop()
    return _summary(latencies, successes, messages)


def _raise_fd_limit() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # both ends of every connection live here


def run() -> dict:
    _raise_fd_limit()
    ours = trio.run(_ours)
    theirs = asyncio.run(_theirs())
    ratio = theirs["median_ms"] / ours["median_ms"]
    print(f"DHT lookups, {PEERS} peers on loopback, k={K}, alpha={ALPHA}, {LOOKUPS} lookups each")
    for name, fig in (("cocoon-p2p", ours), ("kademlia (bmuller)", theirs)):
        print(
            f"  {name:<19} median {fig['median_ms']:7.2f} ms  p99 {fig['p99_ms']:7.2f} ms  "
            f"success {fig['success'] * 100:5.1f} %  messages/lookup {fig['messages_per_lookup']:5.1f}"
        )
    print(f"  median speed-up: {ratio:.2f}x (target >= 2x)")
    return {"ours": ours, "kademlia": theirs, "median_speedup": round(ratio, 2)}


if __name__ == "__main__":
    run()
