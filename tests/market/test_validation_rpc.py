"""Forged, replayed, relayed and expired RFQs, bids and awards are refused by the real handlers."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

from cocoon_p2p.errors import RemoteError
from cocoon_p2p.identity import Identity
from cocoon_p2p.market import Award, Bid, DirectRfqTransport, Prices, Rfq
from cocoon_p2p.market.envelope import now_ms, seal
from cocoon_p2p.rpc import CallContext, Host
from cocoon_p2p.wire import codec
from tests.dht.helpers import dht_network
from tests.market.helpers import MODEL, WorkerSpec, make_client, make_worker

MAX = Prices(100, 300)


def body_of(raw: bytes) -> dict[str, Any]:
    return codec.unpack(codec.unpack(raw)["body"])


def tamper(raw: bytes, **changes: Any) -> bytes:
    env = codec.unpack(raw)
    return codec.pack({**env, "body": codec.pack({**codec.unpack(env["body"]), **changes})})


async def refused(host: Host, target: Host, method: str, params: dict[str, Any]) -> str:
    conn = await host.connect(target.listen_address, expected=target.peer_id)
    with pytest.raises(RemoteError) as info:
        await conn.call(method, params)
    return info.value.code


async def wait_for(predicate: Any) -> None:
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.01)


def rfq_for(identity: Identity, address: str, clock: Any, rng: random.Random, *, ttl_ms: int = 10_000) -> Rfq:
    return Rfq.create(
        identity,
        model=MODEL,
        prompt_tokens=100,
        completion_tokens=100,
        max_prices=MAX,
        bid_window_ms=250,
        client_addr=address,
        expires_ms=now_ms(clock) + ttl_ms,
        rng=rng,
    )


async def test_worker_refuses_bad_rfqs_and_awards() -> None:
    async with dht_network(3) as (client_peer, worker_peer, other_peer):
        client, other = client_peer.host, other_peer.host
        clock, rng = worker_peer.dht.clock, random.Random(5)
        transport = DirectRfqTransport(worker_peer.host, worker_peer.dht)
        worker = make_worker(worker_peer, transport, WorkerSpec(Prices(20, 60)))
        bids: list[Bid] = []

        async def on_bid(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
            bids.append(Bid.decode(params["bid"]))
            return {}

        client.router.unary("market.bid", on_bid)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            conn = await client.connect(worker_peer.host.listen_address, expected=worker_peer.host.peer_id)
            rfq = rfq_for(client.identity, client.listen_address, clock, rng)
            assert await conn.call("market.rfq", {"model": MODEL, "rfq": rfq.raw}) == {}
            await wait_for(lambda: len(bids) == 1)
            bid = bids[0]
            assert bid.job_id == rfq.job_id and bid.prices == Prices(20, 60) and bid.worker_id == worker.peer_id

            # Stateless checks answer at once: forged, expired, relayed by someone else, wrong topic.
            forged = tamper(rfq.raw, max_prompt=10**9)
            stale = rfq_for(client.identity, client.listen_address, clock, rng, ttl_ms=-10_000)
            fresh = rfq_for(client.identity, client.listen_address, clock, rng)
            for sender, params in (
                (client, {"model": MODEL, "rfq": forged}),
                (client, {"model": MODEL, "rfq": stale.raw}),
                (other, {"model": MODEL, "rfq": fresh.raw}),
            ):
                assert await refused(sender, worker_peer.host, "market.rfq", params) == "rejected"
            wrong_topic = {"model": "x", "rfq": fresh.raw}
            assert await refused(client, worker_peer.host, "market.rfq", wrong_topic) == "wrong_model"
            assert worker.stats["rfq_invalid_bad_signature"] == 1
            assert worker.stats["rfq_invalid_expired"] == 1
            assert worker.stats["rfq_invalid_wrong_sender"] == 1

            # Replays pass the stateless check but the worker never bids twice: same RFQ, or same nonce.
            await conn.call("market.rfq", {"model": MODEL, "rfq": rfq.raw})
            same_nonce = seal(client.identity, "rfq", {**body_of(fresh.raw), "nonce": rfq.nonce})
            await conn.call("market.rfq", {"model": MODEL, "rfq": same_nonce})
            await wait_for(lambda: worker.stats["rfq_rejected_replayed"] == 2)
            assert len(bids) == 1

            # Awards.
            def award(identity: Identity = client.identity, **kw: Any) -> bytes:
                args = {"rfq": rfq, "bid": bid, "prices": Prices(30, 90), "expires_ms": now_ms(clock) + 30_000}
                args.update(kw)
                return Award.create(identity, **args).raw

            good = award()
            other_rfq = rfq_for(client.identity, client.listen_address, clock, rng)
            mallory_bid = Bid.create(
                other.identity,
                job_id=rfq.job_id,
                prices=Prices(1, 1),
                load=0,
                capacity=1,
                latency_ms=1,
                offer_ref=b"o" * 32,
                worker_addr="127.0.0.1:1",
                expires_ms=rfq.expires_ms,
            )
            cases = [
                (client, tamper(good, prompt=10**9), "bad_signature"),
                (other, good, "wrong_sender"),  # the client's award, sent by someone else
                (other, award(other.identity), "wrong_sender"),  # another client awarding our job
                (client, award(rfq=other_rfq), "unknown_job"),
                (client, award(prices=Prices(19, 90)), "bad_price"),  # below our bid
                (client, award(prices=Prices(30, 301)), "bad_price"),  # above the client's own max
                (client, award(bid=mallory_bid), "not_winner"),
                (client, award(expires_ms=now_ms(clock) - 10_000), "expired"),
                (client, award(expires_ms=now_ms(clock) + 3_600_000), "too_far_ahead"),
                (client, b"\x93garbage", "malformed"),
            ]
            for sender, raw, code in cases:
                assert await refused(sender, worker_peer.host, "market.award", {"award": raw}) == code, code
            assert await conn.call("market.award", {"award": good}) == {"accepted": True}
            assert await refused(client, worker_peer.host, "market.award", {"award": good}) == "replayed"
            assert await refused(client, worker_peer.host, "market.award", {"award": award()}) == "replayed"
            assert worker.take_award(rfq.job_id, client.peer_id) is not None
            nursery.cancel_scope.cancel()


class CapturingTransport:
    """An RfqTransport that hands published RFQs to the test instead of the network."""

    def __init__(self) -> None:
        self.send, self.published = trio.open_memory_channel[bytes](16)

    async def publish_rfq(self, model_id: str, data: bytes) -> None:
        await self.send.send(data)

    def subscribe_rfqs(self, model_id: str, check: Any) -> trio.MemoryReceiveChannel[Any]:
        raise NotImplementedError


async def test_client_refuses_bad_bids_and_awards_the_valid_one() -> None:
    async with dht_network(3) as (client_peer, w1_peer, w2_peer):
        transport = CapturingTransport()
        client = make_client(client_peer, transport)
        w1, w2 = w1_peer.host, w2_peer.host
        clock = client_peer.dht.clock
        awards: list[Award] = []

        async def on_award(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
            awards.append(Award.decode(params["award"]))
            return {"accepted": True}

        w1.router.unary("market.award", on_award)

        def bid(identity: Identity, rfq: Rfq, prices: Prices, **kw: Any) -> bytes:
            args = {
                "job_id": rfq.job_id,
                "prices": prices,
                "load": 0,
                "capacity": 1,
                "latency_ms": 10,
                "offer_ref": b"o" * 32,
                "worker_addr": w1.listen_address,
                "expires_ms": rfq.expires_ms,
            }
            args.update(kw)
            return Bid.create(identity, **args).raw

        results: list[Any] = []

        async def auction() -> None:
            results.append(await client.run_auction(MODEL, 100, 100, max_prices=MAX, bid_window=2.0, attempts=1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(auction)
            rfq = Rfq.decode(await transport.published.receive())
            assert rfq.client_id == client_peer.host.peer_id and rfq.bid_window_ms == 2000
            good = bid(w1.identity, rfq, Prices(50, 150))
            conn = await w1.connect(client_peer.host.listen_address, expected=client_peer.host.peer_id)
            assert await conn.call("market.bid", {"bid": good}) == {"ok": True}
            cases = [
                (w1, good, "replayed"),
                (w1, bid(w2.identity, rfq, Prices(1, 1)), "wrong_sender"),  # w2's bid, delivered by w1
                (w2, tamper(bid(w2.identity, rfq, Prices(40, 150)), prompt=1), "bad_signature"),
                (w2, bid(w2.identity, rfq, Prices(1, 1), expires_ms=now_ms(clock) - 10_000), "expired"),
                (w2, bid(w2.identity, rfq, Prices(1, 1), job_id=b"j" * 16), "auction_closed"),
                (w2, b"not a bid", "malformed"),
            ]
            for sender, raw, code in cases:
                assert await refused(sender, client_peer.host, "market.bid", {"bid": raw}) == code, code
            # Above the max price: accepted as a bid, but never eligible.
            conn2 = await w2.connect(client_peer.host.listen_address, expected=client_peer.host.peer_id)
            assert await conn2.call("market.bid", {"bid": bid(w2.identity, rfq, Prices(1, 301))}) == {"ok": True}
        outcome = results[0]
        assert outcome.winner.worker_id == w1.peer_id and outcome.clearing == MAX
        assert outcome.bids_received == 2 and len(outcome.ranked) == 1
        assert len(awards) == 1 and awards[0].bid_ref == Bid.decode(good).ref
        late = bid(w2.identity, rfq, Prices(1, 1))
        assert await refused(w2, client_peer.host, "market.bid", {"bid": late}) == "auction_closed"
