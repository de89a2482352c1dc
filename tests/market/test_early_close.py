"""The bid window closes early once every worker with a live offer has bid, and only then."""

from __future__ import annotations

import pytest
import trio

from cocoon_p2p.market import MessageRejected, Prices
from tests.market.helpers import MODEL, WorkerSpec, market_network

MAX = Prices(100, 300)
LONG_WINDOW = 30.0  # far longer than any loopback auction: finishing at all shows the early close


@pytest.mark.parametrize("transport", ["gossip", "direct"])
async def test_auction_closes_once_every_offering_worker_has_bid(transport: str) -> None:
    specs = [WorkerSpec(Prices(40, 120)), WorkerSpec(Prices(20, 60)), WorkerSpec(Prices(30, 90))]
    async with market_network(specs, transport=transport) as net:
        with trio.fail_after(LONG_WINDOW / 2):
            outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=LONG_WINDOW)
        assert net.client.stats["closed_early"] == 1
        # Closing early changes when the auction ends, never who wins or what is charged.
        assert outcome.bids_received == 3
        assert outcome.winner.worker_id == net.workers[1].peer_id
        assert outcome.clearing == Prices(30, 90)


async def test_a_silent_offering_worker_makes_the_client_wait_the_whole_window() -> None:
    window = 0.5
    # The second worker's offer is in the DHT, but it is at capacity, so it never bids.
    specs = [WorkerSpec(Prices(20, 60)), WorkerSpec(Prices(30, 90), max_jobs=1, load=lambda: 1)]
    async with market_network(specs, transport="direct") as net:
        started = trio.current_time()
        outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=window)
        assert trio.current_time() - started >= window
        assert net.client.stats["closed_early"] == 0
        assert outcome.bids_received == 1 and outcome.winner.worker_id == net.workers[0].peer_id
        assert outcome.clearing == MAX  # a lone bid is paid the client's maximum


async def test_an_offer_above_the_clients_maximum_is_not_waited_for() -> None:
    specs = [WorkerSpec(Prices(20, 60)), WorkerSpec(Prices(500, 900))]
    async with market_network(specs, transport="direct") as net:
        with trio.fail_after(LONG_WINDOW / 2):
            outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=LONG_WINDOW)
        assert net.client.stats["closed_early"] == 1
        assert outcome.winner.worker_id == net.workers[0].peer_id


async def test_a_bid_after_the_close_is_refused() -> None:
    specs = [WorkerSpec(Prices(20, 60)), WorkerSpec(Prices(30, 90))]
    async with market_network(specs, transport="direct") as net:
        outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=LONG_WINDOW)
        late = outcome.ranked[1]
        with pytest.raises(MessageRejected) as refused:
            net.client.accept_bid(late.raw, late.worker_id)
        assert refused.value.reason == "auction_closed"


async def test_early_close_can_be_turned_off() -> None:
    window = 0.5
    specs = [WorkerSpec(Prices(20, 60)), WorkerSpec(Prices(30, 90))]
    async with market_network(specs, transport="direct") as net:
        net.client.config.close_when_all_bid = False
        started = trio.current_time()
        outcome = await net.client.run_auction(MODEL, 800, 200, max_prices=MAX, bid_window=window)
        assert trio.current_time() - started >= window
        assert net.client.stats["closed_early"] == 0 and outcome.bids_received == 2
