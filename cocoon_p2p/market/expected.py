"""Which workers a client expects to bid, so an auction can close once all of them have.

A sealed-bid auction gains nothing from waiting after every worker that could bid has
bid: nobody can see the bids, so nobody can react to them. The client knows the likely
bidders from the offers in the DHT (workers serving the model at a price within the
client's maximum). Offers change slowly, so the set is cached for a while and refreshed
off the critical path; a worker missing from it simply makes the auction run its full
window, as before.
"""

from __future__ import annotations

import logging

import trio

from ..dht import Dht
from ..errors import CocoonError
from ..identity import PeerId
from .messages import Prices
from .offer import Offer, find_offers

log = logging.getLogger(__name__)


class ExpectedBidders:
    """Caches the offers for each model for ``ttl`` seconds (clock time)."""

    def __init__(self, dht: Dht, *, ttl: float = 30.0, lookup_timeout: float = 5.0) -> None:
        self.dht = dht
        self.ttl = ttl
        self.lookup_timeout = lookup_timeout
        self._offers: dict[str, tuple[float, list[Offer]]] = {}
        self._locks: dict[str, trio.Lock] = {}

    async def for_model(self, model_id: str, max_prices: Prices, *, exclude: PeerId) -> frozenset[PeerId]:
        """Workers with a live offer for ``model_id`` within ``max_prices``; empty when unknown."""
        offers = await self._offers_for(model_id)
        now = self.dht.clock.now()
        return frozenset(
            o.worker_id
            for o in offers
            if o.expires > now and o.worker_id != exclude and o.prices.within(max_prices)
        )

    def forget(self, model_id: str) -> None:
        """Drop the cached set, e.g. after an auction in which an expected bidder stayed silent."""
        self._offers.pop(model_id, None)

    async def _offers_for(self, model_id: str) -> list[Offer]:
        lock = self._locks.setdefault(model_id, trio.Lock())
        async with lock:  # concurrent auctions for one model share a single lookup
            cached = self._offers.get(model_id)
            now = self.dht.clock.now()
            if cached is not None and now - cached[0] < self.ttl:
                return cached[1]
            offers: list[Offer] = []
            try:
                with trio.move_on_after(self.lookup_timeout):
                    offers = await find_offers(self.dht, model_id)
            except CocoonError as exc:
                log.debug("offer lookup for %s failed: %s", model_id, exc)
            self._offers[model_id] = (now, offers)
            return offers
