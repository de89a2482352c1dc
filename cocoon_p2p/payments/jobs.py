"""The per-job side of payment channels: the session payer/payee adapters and a CPU meter.

A job starts from a ``base``, the payer's cumulative ``sent`` when it begins, and pays
``base + owed`` (docs/PROTOCOL.md §9). On the worker a payment is parsed when it arrives and counted
at once, but it is checked and persisted (``PayeeChannel.accept``) in ``release``, which the job loop
calls before each chunk goes out: one durable write per chunk, holding both the latest state and the
value delivered once the chunk is out (DESIGN.md §10). A chunk that goes out on credit alone is
recorded with ``PayeeChannel.reserve`` instead.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from ..errors import RemoteError
from ..identity import PeerId
from .channel import OPEN, PayeeChannel, PayerChannel
from .errors import PaymentRejected
from .params import MAX_SEQNO, SignedState
from .policy import PAYMENT_REJECTED, ChannelEntry

BUSY_WAIT_S = 12.0  # a job on a channel whose previous job is still winding down waits this long


class CpuMeter:
    """CPU seconds of payment handling on the event loop (a trio instrument) and in store commits."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._inside: set[Any] = set()
        self._started: dict[Any, float] = {}

    def enter(self) -> Any:
        task = trio.lowlevel.current_task()
        self._inside.add(task)
        self._started[task] = time.thread_time()
        return task

    def leave(self, task: Any) -> None:
        started = self._started.pop(task, None)
        if started is not None:
            self.seconds += time.thread_time() - started
        self._inside.discard(task)

    # trio.abc.Instrument hooks: a metered task's time counts only while it runs.
    def before_task_step(self, task: Any) -> None:
        if task in self._inside:
            self._started[task] = time.thread_time()

    def after_task_step(self, task: Any) -> None:
        started = self._started.pop(task, None) if task in self._inside else None
        if started is not None:
            self.seconds += time.thread_time() - started


class _Metered:
    def __init__(self, meter: CpuMeter | None) -> None:
        self.meter = meter
        self.task: Any = None

    def __enter__(self) -> None:
        if self.meter is not None:
            self.task = self.meter.enter()

    def __exit__(self, *exc: object) -> None:
        if self.meter is not None:
            self.meter.leave(self.task)


class ChannelSessionPayer:
    """The client's side of one job on a channel (``session.payment_seam.SessionPayer``)."""

    def __init__(self, entry: ChannelEntry, contract: str) -> None:
        assert isinstance(entry.channel, PayerChannel)
        self.entry = entry
        self.channel: PayerChannel = entry.channel
        self.contract = contract
        self.base = self.channel.sent
        self.finished = False

    async def begin(self) -> dict[str, Any]:
        self.base = self.channel.sent
        return {"mode": "channel", "cid": self.channel.channel_id.to_bytes(16, "big"), "base": self.base}

    async def pay(self, owed_total: int) -> dict[str, Any]:
        state = await self.channel.pay(self.base + owed_total)  # persisted, then signed
        return state.to_wire()

    async def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.entry.free()
        await trio.lowlevel.checkpoint()

    def summary(self) -> dict[str, Any]:
        p = self.channel.params
        return {
            "mode": "ton-channel",
            "channel": f"{p.channel_id:032x}",
            "contract": self.contract,
            "deposit_nanoton": p.deposit_a,
            "job_paid_nanoton": self.channel.sent - self.base,
            "channel_paid_nanoton": self.channel.sent,
        }


class ChannelSessionPayee:
    """The worker's side of one job (``session.payment_seam.SessionPayee``)."""

    def __init__(self, payments: Any, client: PeerId, meter: CpuMeter | None = None, slack: float = 0.0) -> None:
        self.payments = payments  # ChannelPayments: finds the channel the job names
        self.client = client
        self.meter = meter
        self.slack = slack  # share of the credit that may go unpersisted (see _must_persist)
        self.entry: ChannelEntry | None = None
        self.channel: PayeeChannel | None = None
        self.base = 0
        self.forgiven = 0
        self.released = 0  # job-relative value recorded as delivered so far
        self._pending: SignedState | None = None

    async def begin(self, terms: dict[str, Any] | None) -> None:
        if not terms or terms.get("mode") != "channel":
            raise RemoteError(PAYMENT_REJECTED, "this worker is paid through TON payment channels (pay.open first)")
        cid, base = terms.get("cid"), terms.get("base")
        if not isinstance(cid, bytes) or len(cid) != 16 or type(base) is not int or base < 0:
            raise RemoteError(PAYMENT_REJECTED, "pay terms are {mode: channel, cid: bin(16), base: uint}")
        entry = await self.payments.payee_entry(int.from_bytes(cid, "big"), self.client)
        with trio.move_on_after(BUSY_WAIT_S):
            while entry.busy:
                await entry.freed.wait()
        if entry.busy:
            raise RemoteError(PAYMENT_REJECTED, "another job is using this channel")
        channel = entry.channel
        assert isinstance(channel, PayeeChannel)
        if channel.status != OPEN:
            raise RemoteError(PAYMENT_REJECTED, f"channel is {channel.status}")
        if not channel.paid <= base <= channel.params.max_sent_a:
            raise RemoteError(PAYMENT_REJECTED, f"base {base} below what was already paid ({channel.paid})")
        entry.take()
        self.entry, self.channel, self.base = entry, channel, base
        # Chunks an interrupted earlier job released on credit are not asked for again.
        self.forgiven = max(0, channel.delivered - base)

    @property
    def paid(self) -> int:
        if self.channel is None:
            return 0
        latest = self._pending.sent if self._pending is not None else self.channel.paid
        return max(0, latest - self.base)

    async def accept(self, state: dict[str, Any], delivered_value: int, credit: int) -> None:
        with _Metered(self.meter):
            if self.channel is None:
                raise PaymentRejected("no_channel", "payment before the job began")
            try:
                signed = SignedState.from_wire(state)
            except ValueError as exc:
                raise PaymentRejected("malformed", str(exc)) from None
            last = self._pending or self.channel.latest
            if last is not None and (signed.seqno <= last.seqno or signed.sent <= last.sent):
                raise PaymentRejected("stale_seqno", f"seqno {signed.seqno} after {last.seqno}")
            if signed.seqno > MAX_SEQNO or signed.channel_id != self.channel.channel_id:
                raise PaymentRejected("wrong_channel", "state for another channel or out of seqnos")
            self._pending = signed  # checked in full, and persisted, before it releases anything

    async def release(self, delivered_value: int, credit: int) -> None:
        with _Metered(self.meter):
            channel = self.channel
            if channel is None:
                raise PaymentRejected("no_channel", "release before the job began")
            # The job loop releases a chunk once what was delivered *before* it is paid less the credit;
            # the channel counts the chunk being released, so its credit grows by that chunk's value.
            chunk = max(0, delivered_value - self.released)
            total = self.base + delivered_value
            allowance = credit + chunk + self.forgiven
            state = self._pending
            if state is not None and self._must_persist(delivered_value, credit, total, allowance):
                self._pending = None
                await channel.accept(state, total, allowance)  # checked, then persisted
            elif self.slack <= 0 or state is None:
                if not await channel.reserve(total, allowance):  # on credit: recorded first
                    raise PaymentRejected("underpaid", f"paid {channel.paid} of {total - allowance} nanoTON due")
            self.released = max(self.released, delivered_value)

    def _must_persist(self, delivered_value: int, credit: int, total: int, allowance: int) -> bool:
        """Whether to check and persist the pending payment now, or let the next one supersede it.

        With ``slack`` 0 every payment is persisted before the next chunk. Otherwise a payment is
        persisted once the value on disk lags what went out by more than ``slack`` x the credit, when
        the chunk could not go out without it, and at the end of the job: the worker still never has
        more than the credit unpaid on record, for a fraction of the CPU and disk writes.
        """
        assert self.channel is not None
        if self.slack <= 0 or delivered_value <= self.released:  # every payment, or the final one
            return True
        lag = self.base + self.released - self.forgiven - self.channel.paid
        return lag > self.slack * credit or not self.channel.may_deliver(total, allowance)

    def end(self) -> None:
        if self.entry is not None:
            self.entry.free()
            self.entry = None
