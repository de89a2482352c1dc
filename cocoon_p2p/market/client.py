"""The client's side of the market: RFQ out, sealed bids in, award to the winner."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..dht import Dht
from ..errors import CocoonError, RemoteError
from ..identity import PeerId
from ..net import WallClock
from ..rpc import CallContext, Host
from .auction import Decision, decide
from .envelope import Inbox, Timing, now_ms
from .errors import AllAboveMaxPrice, AuctionFailed, AwardFailed, MessageRejected, NoBids, NoOffers
from .expected import ExpectedBidders
from .messages import Award, Bid, Prices, Rfq
from .offer import find_offers, install_offer_validator
from .transport import RfqTransport
from .worker import AWARD_METHOD, BID_METHOD

log = logging.getLogger(__name__)


@dataclass
class ClientMarketConfig:
    attempts: int = 3  # auctions tried before giving up
    backoff: float = 0.5  # seconds before the 2nd attempt; doubles, with ±50 % jitter
    rfq_grace_ms: int = 10_000  # an RFQ (and its bids) stay valid this long after the window
    award_ttl_ms: int = 60_000  # the winner must see the job start within this
    award_timeout: float = 3.0
    max_bids: int = 256  # per auction; more are refused
    # Close the bid window early once every worker with a live offer in the DHT has bid.
    close_when_all_bid: bool = True
    offers_ttl: float = 30.0  # how long the client trusts its view of who offers a model
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        # Peers refuse expiries further ahead than timing.max_ttl_ms; never sign what they would refuse.
        longest_window_ms = 60_000
        if longest_window_ms + self.rfq_grace_ms > self.timing.max_ttl_ms or self.award_ttl_ms > self.timing.max_ttl_ms:
            raise ValueError("rfq_grace_ms + 60 s and award_ttl_ms must not exceed timing.max_ttl_ms")
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


@dataclass(frozen=True)
class AuctionOutcome:
    rfq: Rfq
    award: Award
    winner: Bid
    clearing: Prices
    ranked: tuple[Bid, ...]  # every eligible bid, best first; ranked[0] is the winner
    tried: frozenset[PeerId]  # bidders that were awarded and refused or could not be reached
    bids_received: int
    attempts: int

    @property
    def runners_up(self) -> tuple[Bid, ...]:
        return tuple(b for b in self.ranked[1:] if b.worker_id not in self.tried)


@dataclass
class _Auction:
    rfq: Rfq
    bids: list[Bid] = field(default_factory=list)
    expected: frozenset[PeerId] | None = None  # None until known; then closes once all have bid
    complete: trio.Event = field(default_factory=trio.Event)

    def check_complete(self) -> None:
        if self.expected and self.expected <= {b.worker_id for b in self.bids}:
            self.complete.set()


class ClientMarket:
    """Runs auctions for this peer; answers ``market.bid`` calls from workers."""

    def __init__(
        self,
        host: Host,
        dht: Dht,
        clock: WallClock,
        transport: RfqTransport,
        *,
        rng: random.Random,
        weight: Callable[[PeerId], float] | None = None,
        on_award_failure: Callable[[PeerId, str], None] | None = None,
        address: str | None = None,
        config: ClientMarketConfig | None = None,
    ) -> None:
        self.host = host
        self.dht = dht
        self.clock = clock
        self.transport = transport
        self.rng = rng
        self.weight = weight or (lambda _: 1.0)
        self.on_award_failure = on_award_failure
        self.address = address
        self.config = config or ClientMarketConfig()
        self._open: dict[bytes, _Auction] = {}
        self._bid_inbox = Inbox("bid", clock, self.config.timing)
        self.expected_bidders = ExpectedBidders(dht, ttl=self.config.offers_ttl)
        self.stats: Counter[str] = Counter()
        install_offer_validator(dht)
        host.router.unary(BID_METHOD, self._on_bid)

    # --- bids in -------------------------------------------------------------
    async def _on_bid(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        try:
            self.accept_bid(params.get("bid"), ctx.peer_id)
        except MessageRejected as exc:
            self.stats[f"bid_rejected_{exc.reason}"] += 1
            raise RemoteError(exc.reason, exc.detail) from None
        self.stats["bids_accepted"] += 1
        return {"ok": True}

    def accept_bid(self, raw: Any, sender: PeerId) -> Bid:
        bid = Bid.decode(raw)
        if bid.worker_id != sender:
            raise MessageRejected("wrong_sender", "a bid must come from the worker that signed it")
        auction = self._open.get(bid.job_id)
        if auction is None:
            raise MessageRejected("auction_closed", "no open auction for this job")
        if len(auction.bids) >= self.config.max_bids:
            raise MessageRejected("auction_closed", "this auction has all the bids it takes")
        self._bid_inbox.admit([(bid.job_id, bid.worker_key)], bid.expires_ms)
        auction.bids.append(bid)
        auction.check_complete()
        return bid

    # --- auctions ------------------------------------------------------------
    async def run_auction(
        self,
        model_id: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        max_prices: Prices,
        bid_window: float = 0.25,
        attempts: int | None = None,
    ) -> AuctionOutcome:
        """Publish an RFQ, collect bids for ``bid_window`` seconds, award the winner.

        Retries with a fresh RFQ (new job id) and backoff when nobody can be
        awarded; raises a subclass of ``AuctionFailed`` saying why after the last try.
        """
        attempts = attempts or self.config.attempts
        saw_above_max: Prices | None = None
        award_errors: list[str] = []
        for attempt in range(1, attempts + 1):
            rfq, bids = await self._collect(model_id, prompt_tokens, completion_tokens, max_prices, bid_window)
            decision = self._decide(rfq, bids)
            if decision is not None:
                outcome = await self._award_best(rfq, bids, decision, frozenset(), attempt, award_errors)
                if outcome is not None:
                    return outcome
            elif bids:
                cheapest = min((b.prices for b in bids), key=lambda p: p.scaled_cost(prompt_tokens, completion_tokens))
                saw_above_max = cheapest
            if attempt < attempts:
                await trio.sleep(self.config.backoff * 2 ** (attempt - 1) * self.rng.uniform(0.5, 1.5))
        raise await self._diagnose(model_id, attempts, max_prices, saw_above_max, award_errors)

    async def _collect(
        self, model_id: str, prompt_tokens: int, completion_tokens: int, max_prices: Prices, bid_window: float
    ) -> tuple[Rfq, list[Bid]]:
        window_ms = max(1, round(bid_window * 1000))
        rfq = Rfq.create(
            self.host.identity,
            model=model_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            max_prices=max_prices,
            bid_window_ms=window_ms,
            client_addr=self.address or self.dht.my_address,
            expires_ms=now_ms(self.clock) + window_ms + self.config.rfq_grace_ms,
            rng=self.rng,
        )
        auction = self._open[rfq.job_id] = _Auction(rfq)
        try:
            # Publishing runs inside the window: a slow fan-out eats into it instead of extending it.
            with trio.move_on_after(bid_window) as window:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._publish, rfq)
                    if self.config.close_when_all_bid:
                        nursery.start_soon(self._learn_expected, auction, max_prices)
                    await auction.complete.wait()
                    nursery.cancel_scope.cancel()
        finally:
            del self._open[rfq.job_id]
        if not window.cancelled_caught:
            self.stats["closed_early"] += 1
        elif auction.expected:
            # Someone we counted on stayed silent: look again before the next auction.
            self.expected_bidders.forget(model_id)
        return rfq, list(auction.bids)

    async def _learn_expected(self, auction: _Auction, max_prices: Prices) -> None:
        auction.expected = await self.expected_bidders.for_model(
            auction.rfq.model, max_prices, exclude=self.host.peer_id
        )
        auction.check_complete()

    async def _publish(self, rfq: Rfq) -> None:
        try:
            await self.transport.publish_rfq(rfq.model, rfq.raw)
        except CocoonError as exc:
            log.warning("publishing the rfq for %s failed: %s", rfq.model, exc)

    async def _award_best(
        self,
        rfq: Rfq,
        bids: list[Bid],
        decision: Decision[Bid] | None,
        tried: frozenset[PeerId],
        attempt: int,
        errors: list[str],
    ) -> AuctionOutcome | None:
        """Award the best bid; when it refuses or is unreachable, re-run the rule without it."""
        while decision is not None:
            winner = decision.winner.bid
            award = Award.create(
                self.host.identity,
                rfq=rfq,
                bid=winner,
                prices=decision.clearing,
                expires_ms=now_ms(self.clock) + self.config.award_ttl_ms,
            )
            failure = await self._send_award(winner, award)
            if failure is None:
                return AuctionOutcome(
                    rfq, award, winner, decision.clearing, tuple(r.bid for r in decision.ranked), tried, len(bids),
                    attempt,
                )
            errors.append(f"{winner.worker_id.short}: {failure}")
            if self.on_award_failure is not None:
                self.on_award_failure(winner.worker_id, failure)
            tried = tried | {winner.worker_id}
            decision = self._decide(rfq, [b for b in bids if b.worker_id not in tried])
        return None

    def _decide(self, rfq: Rfq, bids: list[Bid]) -> Decision[Bid] | None:
        """The award rule (docs/PROTOCOL.md §7) over ``bids`` for this RFQ's job."""
        return decide(
            bids,
            prompt_tokens=rfq.prompt_tokens,
            completion_tokens=rfq.completion_tokens,
            max_prices=rfq.max_prices,
            weight=self.weight,
        )

    async def _send_award(self, bid: Bid, award: Award) -> str | None:
        try:
            with trio.fail_after(self.config.award_timeout):
                conn = await self.host.connect(bid.worker_addr, expected=bid.worker_id)
                await conn.call(AWARD_METHOD, {"award": award.raw})
        except RemoteError as exc:
            return exc.code
        except (CocoonError, trio.TooSlowError, OSError) as exc:
            return f"unreachable ({type(exc).__name__})"
        return None

    async def award_next(self, outcome: AuctionOutcome) -> AuctionOutcome:
        """Fail over: award the best runner-up not tried yet (the winner counts as tried).

        The clearing prices are recomputed by the same rule over the remaining bids.
        Raises ``AwardFailed`` when none is left or all refuse; the RFQ must not have expired.
        """
        rfq = outcome.rfq
        tried = outcome.tried | {outcome.winner.worker_id}
        remaining = [b for b in outcome.ranked if b.worker_id not in tried]
        decision = self._decide(rfq, remaining)
        errors: list[str] = []
        result = await self._award_best(rfq, remaining, decision, tried, outcome.attempts, errors)
        if result is None:
            raise AwardFailed(rfq.model, outcome.attempts, errors or ["no runner-up left"])
        return AuctionOutcome(
            result.rfq, result.award, result.winner, result.clearing, outcome.ranked, result.tried,
            outcome.bids_received, outcome.attempts,
        )

    async def _diagnose(
        self, model_id: str, attempts: int, max_prices: Prices, above: Prices | None, award_errors: list[str]
    ) -> AuctionFailed:
        if award_errors:
            return AwardFailed(model_id, attempts, award_errors)
        if above is not None:
            return AllAboveMaxPrice(model_id, attempts, (above.prompt, above.completion))
        try:
            offers = await find_offers(self.dht, model_id)
        except CocoonError:
            offers = []
        if not offers:
            return NoOffers(model_id, attempts)
        affordable = [o for o in offers if o.prices.within(max_prices)]
        if not affordable:
            cheapest = min(offers, key=lambda o: (o.prices.completion, o.prices.prompt)).prices
            return AllAboveMaxPrice(model_id, attempts, (cheapest.prompt, cheapest.completion))
        return NoBids(model_id, attempts, len(affordable))
