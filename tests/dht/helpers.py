"""Build DHT networks of real hosts on loopback TCP inside one trio run."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from cocoon_p2p.dht import Dht, DhtConfig
from cocoon_p2p.identity import Identity
from cocoon_p2p.net import SystemClock, TcpNetwork
from cocoon_p2p.rpc import Host
from cocoon_p2p.wire.limits import DEFAULT_LIMITS, Limits


@dataclass
class DhtPeer:
    host: Host
    dht: Dht
    scope: trio.CancelScope

    def stop(self) -> None:
        self.scope.cancel()


async def _run_peer(
    peer_holder: list[DhtPeer], config: DhtConfig, seed: int, limits: Limits, *, task_status: trio.TaskStatus
) -> None:
    host = Host(Identity.generate(), TcpNetwork(), limits=limits)
    dht = Dht(host, SystemClock(), config=config, rng=random.Random(seed))
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            await nursery.start(dht.run)
            peer = DhtPeer(host, dht, scope)
            peer_holder.append(peer)
            task_status.started(peer)


@asynccontextmanager
async def dht_network(
    count: int, config: DhtConfig | None = None, *, limits: Limits = DEFAULT_LIMITS
) -> AsyncIterator[list[DhtPeer]]:
    config = config or DhtConfig()
    holder: list[DhtPeer] = []
    async with trio.open_nursery() as nursery:
        peers = [await nursery.start(_run_peer, holder, config, i, limits) for i in range(count)]
        rng = random.Random(1)
        # Each peer joins through peer 0 and one random earlier peer, as a bootstrap list would give it.
        for i, peer in enumerate(peers[1:], start=1):
            entries = [(peers[0].host.peer_id, peers[0].host.listen_address)]
            other = peers[rng.randrange(i)]
            entries.append((other.host.peer_id, other.host.listen_address))
            await peer.dht.bootstrap(entries)
        yield peers
        nursery.cancel_scope.cancel()
