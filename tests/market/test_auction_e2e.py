"""Whole auctions on a loopback network: offers in the DHT, RFQ, bids, award, failover, typed failures."""

from __future__ import annotations

import pytest

from cocoon_p2p.market import AllAboveMaxPrice, AwardFailed, NoBids, NoOffers, Prices, Reputation
from tests.gossip.helpers import wait_until
from tests.market.helpers import MODEL, ManualClock, WorkerSpec, market_network

MAX = Prices(100, 300)
# Loopback bids arrive within milliseconds; a generous window keeps a loaded machine from dropping one.
WINDOW = 1.0


@pytest.mark.parametrize("transport", ["gossip", "direct"])
async def test_cheapest_of_three_workers_wins_at_the_second_price_and_holds_the_award(transport: str) -> None:
    specs = [WorkerSpec(Prices(40, 120)), WorkerSpec(Prices(20, 60)), WorkerSpec(Prices(30, 90))]
    async with market_network(specs, transport=transport) as net:
        dear, cheap, middle = net.workers
        outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=WINDOW)
        assert outcome.winner.worker_id == cheap.peer_id
        assert outcome.clearing == Prices(30, 90)  # the runner-up's prices
        assert [b.worker_id for b in outcome.ranked] == [cheap.peer_id, middle.peer_id, dear.peer_id]
        assert [b.worker_id for b in outcome.runners_up] == [middle.peer_id, dear.peer_id]
        assert outcome.bids_received == 3 and outcome.attempts == 1
        assert outcome.award.prices == Prices(30, 90) and outcome.award.bid_ref == outcome.winner.ref
        assert outcome.winner.offer_ref == cheap.offer.ref

        client_id = net.client_peer.host.peer_id
        job = outcome.rfq.job_id
        assert middle.take_award(job, client_id) is None
        assert cheap.take_award(job, net.peers[-1].host.peer_id) is None  # only the awarding client may use it
        award = cheap.take_award(job, client_id)
        assert award is not None and award.prices == Prices(30, 90) and award.model == MODEL
        assert cheap.take_award(job, client_id) is None  # usable once


async def test_reputation_weights_change_the_winner_but_never_charge_below_its_bid(tmp_path) -> None:
    specs = [WorkerSpec(Prices(20, 60)), WorkerSpec(Prices(25, 70))]
    async with market_network(specs) as net:
        cheap, steady = net.workers
        reputation = Reputation(tmp_path, ManualClock())
        for _ in range(6):
            reputation.record_failure(cheap.peer_id, "timed out")
            reputation.record_success(steady.peer_id, latency_ms=300, tokens_per_s=40)
        net.client.weight = reputation.weight
        outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=WINDOW)
        assert outcome.winner.worker_id == steady.peer_id
        assert outcome.clearing == Prices(25, 70)  # the runner-up asked less: the winner gets its own bid


async def test_a_lone_bidder_is_paid_the_max_price_and_load_pricing_raises_bids() -> None:
    from cocoon_p2p.market import PricingPolicy, WorkerMarketConfig

    surge = WorkerMarketConfig(pricing=PricingPolicy("load", surge_permille=500))
    async with market_network([WorkerSpec(Prices(20, 60), max_jobs=2, load=lambda: 1, config=surge)]) as net:
        outcome = await net.client.run_auction(MODEL, 100, 100, max_prices=MAX, bid_window=WINDOW)
        assert outcome.winner.prices == Prices(25, 75)  # 1 of 2 slots busy: +25 %
        assert outcome.winner.load == 1 and outcome.winner.capacity == 2
        assert outcome.clearing == MAX


async def test_winner_refusing_the_award_fails_over_to_the_runner_up_with_a_recomputed_price() -> None:
    calls = {"n": 0}

    def fills_up() -> int:
        # Free when it bids, full when the award arrives (another client took the slot meanwhile).
        calls["n"] += 1
        return 0 if calls["n"] == 1 else 1

    specs = [
        WorkerSpec(Prices(20, 60), max_jobs=1, load=fills_up),
        WorkerSpec(Prices(30, 90)),
        WorkerSpec(Prices(40, 99)),
    ]
    async with market_network(specs) as net:
        flaky, middle, dear = net.workers
        outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=WINDOW)
        assert outcome.winner.worker_id == middle.peer_id
        assert outcome.tried == {flaky.peer_id}
        assert outcome.clearing == Prices(40, 99)
        assert flaky.stats["award_rejected_over_capacity"] == 1
        assert middle.take_award(outcome.rfq.job_id, net.client_peer.host.peer_id) is not None

        # The session layer can fail over once more, to the last bidder, at the max prices.
        again = await net.client.award_next(outcome)
        assert again.winner.worker_id == dear.peer_id and again.clearing == MAX
        with pytest.raises(AwardFailed):
            await net.client.award_next(again)


async def test_no_offers_no_bids_and_prices_too_low_are_typed_errors() -> None:
    specs = [WorkerSpec(Prices(20, 60), max_jobs=1, load=lambda: 1), WorkerSpec(Prices(500, 900))]
    async with market_network(specs) as net:
        busy, dear = net.workers
        with pytest.raises(NoOffers) as no_offers:
            await net.client.run_auction("no-such-model", 10, 10, max_prices=MAX, bid_window=0.05, attempts=2)
        assert no_offers.value.attempts == 2 and "no worker offers" in str(no_offers.value)

        with pytest.raises(NoBids) as no_bids:
            await net.client.run_auction(MODEL, 10, 10, max_prices=MAX, bid_window=0.2, attempts=2)
        assert no_bids.value.offers == 1
        # Both RFQs reached both workers, which declined: one is full, the other too dear.
        await wait_until(lambda: busy.stats["skip_capacity"] == 2 and dear.stats["skip_price"] == 2)

        with pytest.raises(AllAboveMaxPrice) as too_low:
            await net.client.run_auction(MODEL, 10, 10, max_prices=Prices(1, 1), bid_window=0.2, attempts=1)
        assert too_low.value.cheapest == (20, 60)
