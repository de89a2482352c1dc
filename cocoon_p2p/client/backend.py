"""The network client: auctions, sessions and failover behind ``CompletionBackend``.

Failover restarts the job on the next bidder (the documented behaviour): text the
caller has already received is not repeated — the new worker's output must begin
with it (greedy decoding guarantees this for the same model file), and only the
remainder is passed on. If the new output diverges, the job fails with
``WorkerFailed`` rather than splice two different answers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from ..dht import Dht
from ..errors import CocoonError, ConnectionClosed, RemoteError
from ..identity import PeerId
from ..market.client import AuctionOutcome, ClientMarket
from ..market.errors import AllAboveMaxPrice, AuctionFailed, NoOffers
from ..market.messages import Prices
from ..market.offer import find_offers
from ..market.reputation import Reputation
from ..rpc import Host
from ..session.client import JobRun, JobTerms, OverCharged, WorkerStalled
from ..session.payment_seam import PaymentsFactory, SessionPayer
from .types import (
    CompletionRequest,
    CompletionResult,
    ModelListing,
    ModelNotFound,
    NoBids,
    PaymentFailed,
    TextDelta,
    TokenPrices,
    WorkerFailed,
)

log = logging.getLogger(__name__)
DEFAULT_MAX_TOKENS = 256


@dataclass
class ClientSettings:
    models: list[str] = field(default_factory=lambda: ["gemma3-270m"])  # what list_models reports
    max_prices: Prices = field(default_factory=lambda: Prices(100_000_000, 300_000_000))
    bid_window: float = 0.25
    stall_timeout: float = 30.0
    max_failovers: int = 3
    spot_check_rate: float = 0.0  # share of greedy jobs re-run on a second worker and compared


def _estimate_prompt_tokens(request: CompletionRequest) -> int:
    # The client has no tokenizer for every model; ~4 characters a token is the usual rule.
    text = request.prompt or "".join(m.content for m in request.messages or ())
    return max(1, len(text) // 4 + 8)


def _wire_request(request: CompletionRequest, max_tokens: int) -> dict:
    body: dict = {"max_tokens": max_tokens, "stop": list(request.stop)}
    if request.messages is not None:
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    else:
        body["prompt"] = request.prompt
    for name in ("temperature", "top_p", "seed"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return body


class _Stream:
    def __init__(self) -> None:
        self.result: CompletionResult | None = None
        self._source: AsyncIterator[TextDelta] | None = None

    def __aiter__(self) -> AsyncIterator[TextDelta]:
        assert self._source is not None
        return self._source


class CocoonClient:
    def __init__(
        self,
        host: Host,
        dht: Dht,
        market: ClientMarket,
        reputation: Reputation,
        payments: PaymentsFactory,
        settings: ClientSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.dht = dht
        self.market = market
        self.reputation = reputation
        self.payments = payments
        self.settings = settings or ClientSettings()
        self.rng = rng or random.Random()
        self.spot_checks = 0
        self.spot_check_failures = 0
        self._listing_cache: tuple[float, list[ModelListing]] | None = None
        self._offer_wallets: dict[PeerId, str] = {}  # worker -> the TON wallet its offer names
        self.jobs_done = 0
        self.failovers = 0
        self.spent = 0

    async def list_models(self) -> list[ModelListing]:
        now = trio.current_time()
        if self._listing_cache and now - self._listing_cache[0] < 10.0:
            return self._listing_cache[1]
        listings = []
        for model in self.settings.models:
            offers = await find_offers(self.dht, model)
            if not offers:
                continue
            infos = [info for o in offers if (info := o.model(model)) is not None]
            listings.append(
                ModelListing(
                    model=model,
                    gguf_sha256=infos[0].sha256 if infos else "",
                    offers=len(offers),
                    min_prices=TokenPrices(
                        min(o.prices.prompt for o in offers), min(o.prices.completion for o in offers)
                    ),
                    max_prices=TokenPrices(
                        max(o.prices.prompt for o in offers), max(o.prices.completion for o in offers)
                    ),
                    context_length=max((i.context for i in infos), default=2048),
                )
            )
        self._listing_cache = (now, listings)
        return listings

    async def _auction(self, request: CompletionRequest, max_tokens: int) -> AuctionOutcome:
        try:
            return await self.market.run_auction(
                request.model,
                _estimate_prompt_tokens(request),
                max_tokens,
                max_prices=self.settings.max_prices,
                bid_window=self.settings.bid_window,
            )
        except NoOffers as exc:
            raise ModelNotFound(str(exc)) from None
        except (AllAboveMaxPrice, AuctionFailed) as exc:
            raise NoBids(str(exc)) from None

    @asynccontextmanager
    async def stream_completion(self, request: CompletionRequest) -> AsyncIterator[_Stream]:
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        outcome = await self._auction(request, max_tokens)
        handle = _Stream()
        handle._source = self._run(request, max_tokens, outcome, handle)
        yield handle

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """Run a job to the end and return the whole answer."""
        async with self.stream_completion(request) as stream:
            async for _ in stream:
                pass
        assert stream.result is not None
        return stream.result

    def _should_spot_check(self, request: CompletionRequest) -> bool:
        # Only greedy output is reproducible across honest workers, so only greedy jobs are checked.
        rate = self.settings.spot_check_rate
        return rate > 0 and request.temperature == 0 and self.rng.random() < rate

    async def _spot_check(self, request: CompletionRequest, max_tokens: int, outcome: AuctionOutcome, text: str) -> int:
        """Re-run the job on the next bidder; a different answer counts against the first worker.

        Returns what the check cost. A check that cannot run (no runner-up) is skipped.
        """
        try:
            second = await self.market.award_next(outcome)
            job = await self._start_job(second, request, max_tokens)
            check = "".join([piece async for piece in job.stream()])
        except (CocoonError, trio.TooSlowError) as exc:
            log.info("spot check skipped: %s", exc)
            return 0
        self.spot_checks += 1
        passed = check == text
        self.reputation.record_spot_check(outcome.winner.worker_id, passed=passed)
        if not passed:
            self.spot_check_failures += 1
            log.warning("spot check failed: worker %s answered differently from %s",
                        outcome.winner.worker_id.short, second.winner.worker_id.short)  # fmt: skip
        return job.usage.cost if job.usage else job.paid

    async def _payer(self, worker: PeerId, model: str, budget: int) -> SessionPayer:
        """A payer for ``worker``: with payment channels, to the wallet its signed offer names."""
        wallet = ""
        if getattr(self.payments, "needs_offer_wallet", False):
            if worker not in self._offer_wallets:
                self._offer_wallets.update({o.worker_id: o.wallet for o in await find_offers(self.dht, model)})
            wallet = self._offer_wallets.get(worker, "")
        try:
            return await self.payments.payer_for(worker, wallet, budget)
        except (ConnectionClosed, RemoteError):
            self._offer_wallets.pop(worker, None)  # look the offer up again next time
            raise  # the worker refused or vanished: fail over
        except CocoonError as exc:
            raise PaymentFailed(f"could not set up the payment to {worker.short}: {exc}") from None

    async def _start_job(self, outcome: AuctionOutcome, request: CompletionRequest, max_tokens: int) -> JobRun:
        """Connect to the awarded worker, set up its payer, and prepare the job (not yet sent)."""
        winner = outcome.winner
        conn = await self.host.connect(winner.worker_addr, expected=winner.worker_id)
        budget = outcome.clearing.cost(outcome.rfq.prompt_tokens * 4, max_tokens)
        payer = await self._payer(winner.worker_id, request.model, budget)
        terms = JobTerms(
            outcome.award.job_id, outcome.award.raw, _wire_request(request, max_tokens),
            outcome.clearing.prompt, outcome.clearing.completion, max_tokens,
        )  # fmt: skip
        return JobRun(conn, terms, payer, stall_timeout=self.settings.stall_timeout)

    async def _run(
        self, request: CompletionRequest, max_tokens: int, outcome: AuctionOutcome, handle: _Stream
    ) -> AsyncIterator[TextDelta]:
        delivered = ""  # text already passed to the caller
        spent = 0
        failovers = 0
        while True:
            winner = outcome.winner
            worker = winner.worker_id
            job = None
            try:
                job = await self._start_job(outcome, request, max_tokens)
                started = trio.current_time()
                produced = ""
                async for text in job.stream():
                    produced += text
                    if len(produced) <= len(delivered):
                        if not delivered.startswith(produced):
                            raise WorkerFailed("the replacement worker's output diverged from what was streamed")
                        continue
                    if not produced.startswith(delivered):
                        raise WorkerFailed("the replacement worker's output diverged from what was streamed")
                    fresh = produced[len(delivered) :]
                    delivered = produced
                    yield TextDelta(fresh)
                usage = job.usage
                assert usage is not None
                spent += usage.cost
                elapsed = trio.current_time() - started
                first = (job.first_token_at or trio.current_time()) - started
                self.reputation.record_success(
                    worker, latency_ms=first * 1000, tokens_per_s=usage.completion_tokens / max(elapsed, 1e-3)
                )
                self.jobs_done += 1
                self.spent += spent
                if self._should_spot_check(request):
                    spent += await self._spot_check(request, max_tokens, outcome, delivered)
                handle.result = CompletionResult(
                    text=delivered,
                    finish_reason="length" if usage.finish_reason == "length" else "stop",
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cost_nanoton=spent,
                    worker=str(worker),
                    job_id=outcome.award.job_id.hex(),
                    price=TokenPrices(outcome.clearing.prompt, outcome.clearing.completion),
                    payments=job.payer.summary() if hasattr(job.payer, "summary") else None,
                )
                return
            except (ConnectionClosed, WorkerStalled, RemoteError, OverCharged, trio.TooSlowError) as exc:
                if job is not None:
                    spent += job.paid
                reason = getattr(exc, "code", type(exc).__name__)
                self.reputation.record_failure(worker, str(reason))
                if isinstance(exc, RemoteError) and exc.code in ("bad_request",):
                    from .types import BadRequest

                    raise BadRequest(exc.message) from None
                failovers += 1
                if failovers > self.settings.max_failovers:
                    raise WorkerFailed(f"gave up after {failovers} workers failed; last: {exc}") from None
                log.warning("worker %s failed (%s); failing over to the next bidder", worker.short, exc)
                self.failovers += 1
                try:
                    outcome = await self.market.award_next(outcome)
                except CocoonError as next_exc:
                    raise WorkerFailed(
                        f"worker {worker.short} failed ({exc}) and no other bidder is left: {next_exc}"
                    ) from None
