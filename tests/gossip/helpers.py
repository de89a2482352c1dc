"""Gossip networks of real hosts on loopback TCP inside one trio run."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from cocoon_p2p.dht import Dht, DhtConfig
from cocoon_p2p.gossip import Gossip, GossipConfig
from cocoon_p2p.identity import Identity, PeerId
from cocoon_p2p.net import SystemClock, TcpNetwork, WallClock
from cocoon_p2p.rpc import Host

#: Fast heartbeats so meshes form in a fraction of a second; every other default stays.
FAST = GossipConfig(heartbeat_interval=0.1, discovery_interval=2.0)


@dataclass
class GossipPeer:
    host: Host
    dht: Dht
    gossip: Gossip

    @property
    def peer_id(self) -> PeerId:
        return self.host.peer_id


async def start_peer(
    nursery: trio.Nursery,
    seed: int,
    config: GossipConfig = FAST,
    *,
    clock: WallClock | None = None,
    identity: Identity | None = None,
) -> GossipPeer:
    clock = clock or SystemClock()
    host = Host(identity or Identity.generate(), TcpNetwork())
    await nursery.start(host.run)
    dht = Dht(host, clock, config=DhtConfig(query_timeout=5.0), rng=random.Random(seed))
    await nursery.start(dht.run)
    gossip = Gossip(host, dht, clock, random.Random(10_000 + seed), config)
    await nursery.start(gossip.run)
    return GossipPeer(host, dht, gossip)


@asynccontextmanager
async def gossip_network(
    count: int, config: GossipConfig = FAST, *, clock: WallClock | None = None
) -> AsyncIterator[list[GossipPeer]]:
    async with trio.open_nursery() as nursery:
        peers = [await start_peer(nursery, i, config, clock=clock) for i in range(count)]
        rng = random.Random(1)
        # Each peer joins through peer 0 and one random earlier peer, as a bootstrap list would give it.
        for i, peer in enumerate(peers[1:], start=1):
            known = [peers[j] for j in sorted({0, rng.randrange(i)})]
            await peer.dht.bootstrap([(p.peer_id, p.host.listen_address) for p in known])
        yield peers
        nursery.cancel_scope.cancel()


async def wait_until(condition: Callable[[], bool], *, limit: float = 60.0, poll: float = 0.02) -> None:
    """Poll ``condition``; the limit only turns a hang into a failure, it is no assertion on speed."""
    with trio.fail_after(limit):
        while not condition():
            await trio.sleep(poll)


async def settle(peers: list[GossipPeer], *, limit: float = 60.0) -> None:
    """Wait until no peer has anything queued or in flight, twice in a row."""
    quiet = 0
    with trio.fail_after(limit):
        while quiet < 2:
            await trio.sleep(0.05)
            quiet = quiet + 1 if all(p.gossip.pending_sends == 0 for p in peers) else 0


def mesh_ready(peers: list[GossipPeer], topic: str, minimum: int) -> bool:
    return all(len(p.gossip.mesh_peers(topic)) >= minimum for p in peers)
