"""The worker side of a job: check the award, stream tokens, stop when payment lags."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import CocoonError, RemoteError, find_exception
from ..identity import PeerId
from ..inference import GenerationRequest, InferenceEngine
from ..inference.errors import InferenceError
from ..market.messages import Award
from ..rpc import CallContext, Host, Stream
from . import protocol as p
from .payment_seam import PaymentError, PaymentsFactory, SessionPayee

log = logging.getLogger(__name__)

#: Looks up (and consumes) the award a client claims: (job id, client) -> Award or None.
AwardLookup = Callable[[bytes, PeerId], Award | None]


@dataclass
class WorkerSessionConfig:
    credit_tokens: int = 16  # the client may owe at most this many completion tokens' worth
    payment_timeout: float = 10.0  # how long to wait for a lagging payment before stopping
    final_payment_timeout: float = 10.0


@dataclass
class WorkerStats:
    jobs_started: int = 0
    jobs_finished: int = 0
    jobs_failed: int = 0
    tokens_served: int = 0
    earned: int = 0
    payment_stops: int = 0
    running: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


class WorkerSession:
    def __init__(
        self,
        host: Host,
        engines: dict[str, InferenceEngine],
        take_award: AwardLookup,
        payments: PaymentsFactory,
        *,
        config: WorkerSessionConfig | None = None,
    ) -> None:
        self.engines = engines
        self.take_award = take_award
        self.payments = payments
        self.config = config or WorkerSessionConfig()
        self.stats = WorkerStats()
        host.router.stream(p.JOB_METHOD, self._on_job)

    def load(self) -> int:
        return self.stats.running

    async def _on_job(self, ctx: CallContext, params: dict[str, Any], stream: Stream) -> None:
        job = p.JOB_OPEN.validate(params)
        award = self.take_award(job["job_id"], ctx.peer_id)
        if award is None:
            raise RemoteError(p.NO_AWARD, "no live award for this job and client; run an auction first")
        engine = self.engines.get(award.model)
        if engine is None:
            raise RemoteError(p.MODEL_NOT_SERVED, f"this worker does not serve {award.model}")
        try:
            request = GenerationRequest.from_dict(job["request"])
        except InferenceError as exc:
            raise RemoteError(p.BAD_REQUEST, str(exc)) from None
        payee = await self.payments.payee_for(ctx.peer_id)
        try:
            await payee.begin(job["pay"])
        except PaymentError as exc:
            raise RemoteError(p.PAYMENT_REJECTED, str(exc)) from None
        self.stats.jobs_started += 1
        self.stats.running += 1
        log.info("job %s from %s: %s", job["job_id"].hex()[:8], ctx.peer_id.short, award.model)
        try:
            await _Job(self, award, engine, request, payee, stream).run()
            self.stats.jobs_finished += 1
        except RemoteError as exc:
            self.stats.jobs_failed += 1
            self.stats.by_error[exc.code] = self.stats.by_error.get(exc.code, 0) + 1
            log.info("job %s stopped: %s", job["job_id"].hex()[:8], exc)
            raise
        finally:
            self.stats.running -= 1
            payee.end()


class _Job:
    """One running job: a generator loop and a payment reader sharing ``paid``."""

    def __init__(
        self,
        session: WorkerSession,
        award: Award,
        engine: InferenceEngine,
        request: GenerationRequest,
        payee: SessionPayee,
        stream: Stream,
    ) -> None:
        self.session = session
        self.award = award
        self.engine = engine
        self.request = request
        self.payee = payee
        self.stream = stream
        self.delivered_value = 0
        self.payment_arrived = trio.Event()
        prices = award.prices
        self.prices = (prices.prompt, prices.completion)
        self.credit = p.job_cost(0, prices.completion, 0, session.config.credit_tokens)

    def owed(self, prompt_tokens: int, completion_tokens: int) -> int:
        return p.job_cost(*self.prices, prompt_tokens, completion_tokens)

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_payments)
                await self._generate()
                await self._await_payment(self.delivered_value, 0, self.session.config.final_payment_timeout)
                await self._release(self.delivered_value)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Report the protocol outcome (payment lagging, rejected…) rather than trio's wrapper.
            remote = find_exception(group, RemoteError)
            if remote is None:
                raise
            raise remote from None
        finally:
            self.session.stats.earned += self.payee.paid

    async def _generate(self) -> None:
        try:
            async with self.engine.stream(self.request) as tokens:
                prompt_tokens = tokens.prompt_tokens
                completion = 0
                async for chunk in tokens:
                    # Release the next chunk once what was already delivered is paid, less the credit;
                    # the prompt is billed with the first chunk, so the first chunk never waits.
                    await self._await_payment(self.delivered_value, self.credit, self.session.config.payment_timeout)
                    owed_after = self.owed(prompt_tokens, completion + chunk.tokens)
                    await self._release(owed_after)
                    completion += chunk.tokens
                    self.delivered_value = owed_after
                    await self.stream.send(
                        {"t": "chunk", "text": chunk.text, "tokens": chunk.tokens, "owed": owed_after}
                    )
                usage = tokens.usage
        except InferenceError as exc:
            raise RemoteError(exc.code, str(exc)) from None
        self.session.stats.tokens_served += usage.completion_tokens
        self.delivered_value = self.owed(usage.prompt_tokens, usage.completion_tokens)
        await self.stream.send(
            {
                "t": "usage",
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "finish_reason": usage.finish_reason,
                "owed": self.delivered_value,
            }
        )

    async def _await_payment(self, value: int, credit: int, timeout: float) -> None:
        with trio.move_on_after(timeout):
            while self.payee.paid < value - credit:
                self.payment_arrived = trio.Event()
                await self.payment_arrived.wait()
            return
        self.session.stats.payment_stops += 1
        raise RemoteError(p.PAYMENT_LAGGING, f"paid {self.payee.paid} of {value - credit} nanoTON due; stopping")

    async def _release(self, value: int) -> None:
        """Persist the latest payment with the value delivered once the next chunk is out, before it goes."""
        try:
            with trio.CancelScope(shield=True):  # a payment that arrived is kept even if the job is cancelled
                await self.payee.release(value, self.credit)
        except (PaymentError, CocoonError) as exc:
            raise RemoteError(p.PAYMENT_REJECTED, str(exc)) from None

    async def _read_payments(self) -> None:
        try:
            async for msg in self.stream:
                if p.ENVELOPE.validate(msg)["t"] != "pay":
                    continue
                state = p.PAY.validate(msg)["state"]
                try:
                    await self.payee.accept(state, self.delivered_value, self.credit)
                except (PaymentError, CocoonError) as exc:
                    raise RemoteError(p.PAYMENT_REJECTED, str(exc)) from None
                self.payment_arrived.set()
        except trio.EndOfChannel:
            pass
