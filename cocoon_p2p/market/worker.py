"""The worker's side of the market: publish offers, answer RFQs with bids, accept awards."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from ..dht import Dht
from ..errors import CocoonError, RemoteError
from ..identity import PeerId
from ..net import WallClock
from ..rpc import CallContext, Host
from .envelope import Inbox, Timing, check_expiry, now_ms
from .errors import MessageRejected
from .messages import Award, Bid, Prices, Rfq
from .offer import ModelInfo, Offer, install_offer_validator, publish_offer, withdraw_offer
from .pricing import PricingPolicy
from .transport import RfqTransport

log = logging.getLogger(__name__)

BID_METHOD = "market.bid"
AWARD_METHOD = "market.award"
U32_MAX = (1 << 32) - 1
# Prompt evaluation runs much faster than generation; without a measurement, assume this factor.
PROMPT_SPEEDUP = 8


def default_latency_ms(rfq: Rfq, model: ModelInfo, load: int, base_ms: int) -> int:
    """A rough first-token latency: a fixed overhead plus prompt evaluation time."""
    rate = max(1.0, model.tokens_per_s * PROMPT_SPEEDUP)
    return min(U32_MAX, base_ms + int(rfq.prompt_tokens * 1000 / rate))


@dataclass
class WorkerMarketConfig:
    pricing: PricingPolicy = field(default_factory=PricingPolicy)
    offer_ttl: int = 6 * 3600  # seconds an offer stays valid; refreshed well before
    offer_refresh: float = 1800.0
    timing: Timing = field(default_factory=Timing)
    bid_timeout: float = 2.0  # dial + call to the client
    base_latency_ms: int = 50
    max_concurrent_rfqs: int = 64  # RFQs being answered at once; more are dropped


@dataclass
class _Pending:
    rfq: Rfq
    bid: Bid


class WorkerMarket:
    """Serves ``models``: offers in the DHT, bids on RFQs within capacity, accepts awards.

    ``load()`` returns the jobs running now; awards not yet taken by the session
    layer count as load too, so a worker never accepts more awards than slots.
    """

    def __init__(
        self,
        host: Host,
        dht: Dht,
        clock: WallClock,
        transport: RfqTransport,
        *,
        models: Sequence[ModelInfo],
        prices: Prices,
        max_jobs: int,
        load: Callable[[], int],
        hardware: dict[str, Any] | None = None,
        wallet: str = "",
        uptime_target_bp: int = 9900,
        attestation: bytes | None = None,
        addresses: list[str] | None = None,
        config: WorkerMarketConfig | None = None,
        latency: Callable[[Rfq, ModelInfo, int], int] | None = None,
    ) -> None:
        if not models:
            raise ValueError("a worker market needs at least one model")
        if max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self.host = host
        self.dht = dht
        self.clock = clock
        self.transport = transport
        self.models = {m.name: m for m in models}
        self.prices = prices
        self.max_jobs = max_jobs
        self.load = load
        self.hardware = hardware
        self.wallet = wallet
        self.uptime_target_bp = uptime_target_bp
        self.attestation = attestation
        self.addresses = addresses
        self.config = config or WorkerMarketConfig()
        self.latency = latency or partial(_latency_with_base, self.config.base_latency_ms)
        self.offer: Offer | None = None
        self.stats: Counter[str] = Counter()
        self.started_at = 0
        timing = self.config.timing
        self._rfqs = Inbox("rfq", clock, timing)
        self._award_inbox = Inbox("award", clock, timing)
        self._bids: dict[bytes, _Pending] = {}
        self._awards: dict[bytes, Award] = {}
        self._slots = trio.Semaphore(self.config.max_concurrent_rfqs)
        self._nursery: trio.Nursery | None = None
        install_offer_validator(dht)
        host.router.unary(AWARD_METHOD, self._on_award)

    @property
    def peer_id(self) -> PeerId:
        return self.host.peer_id

    # --- lifecycle -----------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, publish the offer, then serve until cancelled; withdraws the offer on exit."""
        self.started_at = int(self.clock.now())
        self.offer = self._sign_offer()  # bids name it, so it must exist before the first RFQ
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Subscribe before the offer is visible: a client that finds it may send an RFQ at once.
                for name in self.models:
                    channel = self.transport.subscribe_rfqs(name, partial(self.check_rfq, name))
                    nursery.start_soon(self._serve, channel)
                await self._publish(self.offer)
                nursery.start_soon(self._refresh_loop)
                task_status.started()
        finally:
            if self.offer is not None:
                with trio.CancelScope(shield=True):
                    await withdraw_offer(self.dht, self.offer)

    async def refresh_offer(self) -> Offer:
        """Sign a fresh offer (new expiry, current prices) and publish it under each model."""
        self.offer = self._sign_offer()
        await self._publish(self.offer)
        return self.offer

    def _sign_offer(self) -> Offer:
        return Offer.create(
            self.host.identity,
            addrs=self.addresses or [self.dht.my_address],
            models=list(self.models.values()),
            prices=self.prices,
            max_jobs=self.max_jobs,
            started_at=self.started_at or int(self.clock.now()),
            expires=int(self.clock.now()) + self.config.offer_ttl,
            wallet=self.wallet,
            hardware=self.hardware,
            uptime_target_bp=self.uptime_target_bp,
            attestation=self.attestation,
        )

    async def _publish(self, offer: Offer) -> None:
        try:
            stored = await publish_offer(self.dht, offer)
            log.info("offer for %s published on %d peers", ", ".join(self.models), stored)
        except CocoonError as exc:
            log.warning("publishing the offer failed (will retry at the next refresh): %s", exc)

    async def _refresh_loop(self) -> None:
        while True:
            await trio.sleep(self.config.offer_refresh)
            await self.refresh_offer()

    def current_load(self) -> int:
        self._prune()
        return self.load() + len(self._awards)

    def _prune(self) -> None:
        now = now_ms(self.clock)
        skew = self.config.timing.skew_ms
        for job in [j for j, p in self._bids.items() if p.rfq.expires_ms + skew < now]:
            del self._bids[job]
        for job in [j for j, a in self._awards.items() if a.expires_ms + skew < now]:
            del self._awards[job]

    # --- RFQs ----------------------------------------------------------------
    def check_rfq(self, model: str, data: bytes, origin: PeerId | None) -> bool:
        """Stateless RFQ check, run by the transport before delivery (and by gossip before forwarding)."""
        try:
            self._check_rfq(Rfq.decode(data), model, origin)
        except MessageRejected as exc:
            self.stats[f"rfq_invalid_{exc.reason}"] += 1
            return False
        return True

    def _check_rfq(self, rfq: Rfq, model: str, origin: PeerId | None) -> None:
        if rfq.model != model:
            raise MessageRejected("wrong_model", f"rfq for {rfq.model!r} on the {model!r} topic")
        if origin is not None and origin != rfq.client_id:
            raise MessageRejected("wrong_sender", "rfq relayed under another origin")
        check_expiry("rfq", rfq.expires_ms, now_ms(self.clock), self.config.timing)

    async def _serve(self, channel: trio.MemoryReceiveChannel[Any]) -> None:
        assert self._nursery is not None
        async with channel:
            async for delivery in channel:
                try:
                    self._slots.acquire_nowait()
                except trio.WouldBlock:
                    self.stats["rfq_dropped_busy"] += 1
                    continue
                self._nursery.start_soon(self._handle_rfq, delivery.data, delivery.origin)

    async def _handle_rfq(self, data: bytes, origin: PeerId | None) -> None:
        try:
            await self.handle_rfq(data, origin)
        finally:
            self._slots.release()
            self.stats["rfq_handled"] += 1  # every delivery, once its outcome (bid or not) is known

    async def handle_rfq(self, data: bytes, origin: PeerId | None) -> Bid | None:
        """Validate an RFQ and bid on it when capacity and price allow; returns the bid sent."""
        try:
            rfq = Rfq.decode(data)
            model = self.models.get(rfq.model)
            if model is None:
                raise MessageRejected("wrong_model", f"not serving {rfq.model!r}")
            self._check_rfq(rfq, rfq.model, origin)
            self._rfqs.admit([("job", rfq.job_id), ("nonce", rfq.nonce)], rfq.expires_ms)
        except MessageRejected as exc:
            self.stats[f"rfq_rejected_{exc.reason}"] += 1
            return None
        self.stats["rfq_accepted"] += 1
        if rfq.client_id == self.peer_id:
            return None
        if rfq.prompt_tokens + rfq.completion_tokens > model.context:
            self.stats["skip_context"] += 1
            return None
        load = self.current_load()
        if load >= self.max_jobs:
            self.stats["skip_capacity"] += 1
            return None
        prices = self.config.pricing.bid_prices(self.prices, load, self.max_jobs)
        if not prices.within(rfq.max_prices):
            self.stats["skip_price"] += 1
            return None
        assert self.offer is not None
        bid = Bid.create(
            self.host.identity,
            job_id=rfq.job_id,
            prices=prices,
            load=load,
            capacity=self.max_jobs,
            latency_ms=self.latency(rfq, model, load),
            offer_ref=self.offer.ref,
            worker_addr=self.offer.addrs[0],
            expires_ms=rfq.expires_ms,
        )
        self._bids[rfq.job_id] = _Pending(rfq, bid)
        try:
            with trio.fail_after(self.config.bid_timeout):
                conn = await self.host.connect(rfq.client_addr, expected=rfq.client_id)
                await conn.call(BID_METHOD, {"bid": bid.raw})
        except RemoteError as exc:
            self.stats[f"bid_refused_{exc.code}"] += 1
            return None
        except (CocoonError, trio.TooSlowError, OSError) as exc:
            log.debug("bid to %s failed: %s", rfq.client_id.short, exc)
            self.stats["bid_failed"] += 1
            return None
        self.stats["bids_sent"] += 1
        return bid

    # --- awards --------------------------------------------------------------
    async def _on_award(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        try:
            award = self.check_award(params.get("award"), ctx.peer_id)
        except MessageRejected as exc:
            self.stats[f"award_rejected_{exc.reason}"] += 1
            raise RemoteError(exc.reason, exc.detail) from None
        self._awards[award.job_id] = award
        self.stats["awards_accepted"] += 1
        log.info("won job %s from %s at %s", award.job_id.hex(), award.client_id.short, award.prices)
        return {"accepted": True}

    def check_award(self, raw: Any, sender: PeerId) -> Award:
        award = Award.decode(raw)
        if award.client_id != sender:
            raise MessageRejected("wrong_sender", "an award must come from the client that signed it")
        pending = self._bids.get(award.job_id)
        if pending is None:
            raise MessageRejected("unknown_job", "no open bid of ours for this job")
        rfq, bid = pending.rfq, pending.bid
        if rfq.client_id != award.client_id:
            raise MessageRejected("wrong_sender", "the award's client did not ask for this job")
        if award.winner != self.peer_id:
            raise MessageRejected("not_winner", "the award names another worker")
        if award.bid_ref != bid.ref or award.model != rfq.model:
            raise MessageRejected("bid_mismatch", "the award does not name our bid")
        if (award.prompt_tokens, award.completion_tokens) != (rfq.prompt_tokens, rfq.completion_tokens):
            raise MessageRejected("bid_mismatch", "the award changes the RFQ's token estimates")
        if not bid.prices.within(award.prices) or not award.prices.within(rfq.max_prices):
            raise MessageRejected("bad_price", "clearing prices must lie between our bid and the max prices")
        self._award_inbox.check_fresh(award.expires_ms)
        if award.job_id in self._award_inbox.guard or award.job_id in self._awards:
            raise MessageRejected("replayed", "this job was already awarded")
        if self.current_load() >= self.max_jobs:
            raise MessageRejected("over_capacity", "every slot is taken")
        self._award_inbox.admit([award.job_id], award.expires_ms)
        return award

    def take_award(self, job_id: bytes, client_id: PeerId) -> Award | None:
        """The award for ``job_id`` if ``client_id`` holds it and it has not expired; usable once."""
        self._prune()
        award = self._awards.get(job_id)
        if award is None or award.client_id != client_id:
            return None
        del self._awards[job_id]
        self._bids.pop(job_id, None)
        return award


def _latency_with_base(base_ms: int, rfq: Rfq, model: ModelInfo, load: int) -> int:
    return default_latency_ms(rfq, model, load, base_ms)
