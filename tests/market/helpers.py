"""Market peers on a real loopback DHT network."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from cocoon_p2p.gossip.discovery import find_subscribers
from cocoon_p2p.market import (
    ClientMarket,
    ClientMarketConfig,
    DirectRfqTransport,
    GossipRfqTransport,
    ModelInfo,
    Prices,
    WorkerMarket,
    WorkerMarketConfig,
    install_offer_validator,
    rfq_topic,
)
from cocoon_p2p.net import WallClock
from tests.dht.helpers import dht_network
from tests.gossip.helpers import gossip_network, wait_until

MODEL = "gemma3-270m"
SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA = ModelInfo(MODEL, SHA, context=2048, tokens_per_s=40.0)
GPU = {"gpus": [{"name": "NVIDIA H100", "vram_mib": 81559, "driver_version": "550"}], "cpu_model": "x", "cpu_cores": 8}


class ManualClock:
    """A wall clock the test sets by hand (an injected clock, as protocol code expects)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


@dataclass
class WorkerSpec:
    prices: Prices
    max_jobs: int = 2
    load: Callable[[], int] = lambda: 0
    models: tuple[ModelInfo, ...] = (GEMMA,)
    config: WorkerMarketConfig | None = None


@dataclass
class MarketNet:
    peers: list[Any]  # DhtPeer or GossipPeer: both have .host and .dht
    workers: list[WorkerMarket]
    client: ClientMarket
    client_peer: Any


def make_client(peer: Any, transport: Any, **kwargs: Any) -> ClientMarket:
    config = kwargs.pop("config", None) or ClientMarketConfig(backoff=0.01)
    return ClientMarket(peer.host, peer.dht, peer.dht.clock, transport, rng=random.Random(7), config=config, **kwargs)


def make_worker(peer: Any, transport: Any, spec: WorkerSpec, clock: WallClock | None = None) -> WorkerMarket:
    return WorkerMarket(
        peer.host,
        peer.dht,
        clock or peer.dht.clock,
        transport,
        models=spec.models,
        prices=spec.prices,
        max_jobs=spec.max_jobs,
        load=spec.load,
        hardware=GPU,
        wallet="EQ-test-wallet",
        config=spec.config,
    )


def transport_for(peer: Any) -> Any:
    gossip = getattr(peer, "gossip", None)
    return GossipRfqTransport(gossip) if gossip is not None else DirectRfqTransport(peer.host, peer.dht)


async def wait_for_gossip_mesh(client_peer: Any, workers: list[WorkerMarket], peers: list[Any]) -> None:
    """Until the client finds every worker's subscription and each worker has mesh peers.

    A readiness wait, not a speed assertion: publishing earlier would only reach fewer workers.
    """
    topic = rfq_topic(MODEL)
    ids = {w.peer_id for w in workers}
    gossips = {p.host.peer_id: p.gossip for p in peers}
    wanted = min(2, len(workers) - 1)

    async def client_sees_all() -> bool:
        return ids <= {s.peer_id for s in await find_subscribers(client_peer.dht, topic)}

    with trio.fail_after(60):
        while not await client_sees_all():
            await trio.sleep(0.1)
    await wait_until(lambda: all(len(gossips[i].mesh_peers(topic)) >= wanted for i in ids), limit=60)


@asynccontextmanager
async def market_network(
    specs: list[WorkerSpec],
    *,
    extra_peers: int = 2,
    client_kwargs: dict[str, Any] | None = None,
    transport: str = "gossip",
) -> AsyncIterator[MarketNet]:
    """Peer 0 is the client, the next ``len(specs)`` are workers, the rest plain peers.

    ``transport`` "gossip" carries RFQs on the ``rfq/<model>`` topic; "direct" fans
    them out by RPC to the workers found in the DHT.
    """
    count = 1 + len(specs) + extra_peers
    network = gossip_network(count) if transport == "gossip" else dht_network(count)
    async with network as peers:
        for peer in peers:
            install_offer_validator(peer.dht)
        client_peer = peers[0]
        client = make_client(client_peer, transport_for(client_peer), **(client_kwargs or {}))
        async with trio.open_nursery() as nursery:
            workers = []
            for peer, spec in zip(peers[1:], specs, strict=False):
                worker = make_worker(peer, transport_for(peer), spec)
                await nursery.start(worker.run)
                workers.append(worker)
            if transport == "gossip" and workers:
                await wait_for_gossip_mesh(client_peer, workers, peers)
            yield MarketNet(peers, workers, client, client_peer)
            nursery.cancel_scope.cancel()
