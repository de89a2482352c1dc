"""Worker and client peers for the market scenario: the production market, session and client code.

A worker runs ``WorkerMarket`` (offer in the DHT, bids, awards) and ``WorkerSession``
(the job protocol) with a ``TimedEngine`` in place of llama.cpp and
``LedgerPayments`` (the session's unpaid mode: cumulative amounts, no chain). A
client runs ``ClientMarket`` + ``CocoonClient`` (auction, session, failover,
reputation in memory).

``RecordingClientMarket`` is the production ``ClientMarket`` with two additions
made by subclassing, never by editing it:

- it remembers each task's last ``AuctionOutcome`` (bids, winner, clearing
  prices), which the scenario reads after the job;
- with ``first_price=True`` the award pays the winner its own bid instead of the
  second price: the clearing step is replaced, the ranking (``auction.decide``)
  is not. A failover inside one auction (an award refused) re-runs the production
  rule and so pays the second price: rare, and counted by the scenario.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import trio

from cocoon_p2p.client.backend import ClientSettings, CocoonClient
from cocoon_p2p.market import (
    AuctionOutcome,
    ClientMarket,
    DirectRfqTransport,
    GossipRfqTransport,
    ModelInfo,
    Prices,
    WorkerMarket,
)
from cocoon_p2p.market.auction import Decision
from cocoon_p2p.market.reputation import Reputation
from cocoon_p2p.session.payment_seam import LedgerPayments
from cocoon_p2p.session.worker import WorkerSession

from .engine import TimedEngine
from .harness import World
from .swarm import Peer

MODEL = "sim-model"
MODEL_SHA256 = "ab" * 32
CONTEXT = 8192


class RecordingClientMarket(ClientMarket):
    first_price = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[Any, AuctionOutcome] = {}
        self.first_price_awards = 0

    async def run_auction(self, *args: Any, **kwargs: Any) -> AuctionOutcome:
        outcome = await super().run_auction(*args, **kwargs)
        self.outcomes[trio.lowlevel.current_task()] = outcome
        return outcome

    async def award_next(self, outcome: AuctionOutcome) -> AuctionOutcome:
        result = await super().award_next(outcome)
        self.outcomes[trio.lowlevel.current_task()] = result
        return result

    async def _award_best(self, rfq: Any, bids: Any, decision: Decision[Any] | None, *args: Any) -> Any:
        if self.first_price and decision is not None:
            decision = dataclasses.replace(decision, clearing=decision.winner.bid.prices)
            self.first_price_awards += 1
        return await super()._award_best(rfq, bids, decision, *args)


def make_transport(kind: str, peer: Peer, world: World, seeds: Any) -> Any:
    if kind == "direct":
        return DirectRfqTransport(peer.host, peer.dht)
    if kind != "gossip":
        raise ValueError("--transport is direct or gossip")
    from cocoon_p2p.gossip import Gossip

    gossip = Gossip(peer.host, peer.dht, world.wall, seeds.rng(f"market/gossip/{peer.index}/{peer.session}"))
    peer.extra["gossip"] = gossip
    return GossipRfqTransport(gossip)


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    prices: Prices
    max_jobs: int
    tokens_per_s: float


async def build_worker(peer: Peer, spec: WorkerSpec, transport: Any, world: World, chunk_tokens: int) -> None:
    """Construct the worker's layers (the market starts later, in ``start_worker``)."""
    engine = TimedEngine(MODEL, spec.tokens_per_s, chunk_tokens=chunk_tokens)
    session = WorkerSession(peer.host, {MODEL: engine}, _take_award(peer), LedgerPayments())  # type: ignore[dict-item]
    market = WorkerMarket(
        peer.host,
        peer.dht,
        world.wall,
        transport,
        models=[ModelInfo(MODEL, MODEL_SHA256, CONTEXT, spec.tokens_per_s)],
        prices=spec.prices,
        max_jobs=spec.max_jobs,
        load=session.load,
        addresses=[peer.dht.my_address],
    )
    peer.extra.update(engine=engine, session=session, market=market, spec=spec)
    if "gossip" in peer.extra:
        await peer.nursery.start(peer.extra["gossip"].run)


def _take_award(peer: Peer) -> Any:
    def take(job_id: bytes, client: Any) -> Any:
        market = peer.extra.get("market")
        return market.take_award(job_id, client) if market is not None else None

    return take


async def start_worker(peer: Peer) -> None:
    """Publish the offer and serve RFQs (after the peer has joined the DHT)."""
    await peer.nursery.start(peer.extra["market"].run)


async def build_client(
    peer: Peer, transport: Any, world: World, seeds: Any, *, max_prices: Prices, bid_window: float, first_price: bool
) -> None:
    reputation = Reputation(None, world.wall)
    market = RecordingClientMarket(
        peer.host,
        peer.dht,
        world.wall,
        transport,
        rng=seeds.rng(f"market/client/{peer.index}/{peer.session}"),
        weight=reputation.weight,
        address=peer.dht.my_address,
    )
    market.first_price = first_price
    settings = ClientSettings(models=[MODEL], max_prices=max_prices, bid_window=bid_window)
    client = CocoonClient(
        peer.host,
        peer.dht,
        market,
        reputation,
        LedgerPayments(),
        settings,
        rng=seeds.rng(f"market/cocoon/{peer.index}/{peer.session}"),
    )
    peer.extra.update(market=market, client=client, reputation=reputation)
    if "gossip" in peer.extra:
        await peer.nursery.start(peer.extra["gossip"].run)
