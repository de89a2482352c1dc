"""The off-chain channel state machine for both roles (DESIGN.md §10).

``PayerChannel`` (client, party A) signs cumulative ``sent`` amounts with strictly increasing
seqnos, persisting each state *before* signing it, so a crash can never lead it to sign two
different states for one seqno. ``PayeeChannel`` (worker, party B) checks every state it is given
and persists the latest accepted one before the caller delivers the next chunk.

Both reload from a :class:`ChannelStore` after a restart and can then go on paying, close
cooperatively, or hand their evidence to ``onchain.force_close``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import trio
from pytoniq_core import Cell

from ..identity import Identity
from .cells import SemiChannelBody, verify_cell
from .errors import ChannelStateError, PaymentRejected
from .params import MAX_SEQNO, ChannelParams, CloseTerms, CommitTerms, SignedState
from .store import ChannelStore

OPEN, CLOSING, CLOSED = "open", "closing", "closed"


def _state_to_record(state: SignedState | None) -> dict[str, Any] | None:
    return None if state is None else state.to_wire()


def _state_from_record(data: dict[str, Any] | None) -> SignedState | None:
    return None if data is None else SignedState.from_wire(data)


class _Channel:
    role: ClassVar[str]
    is_a: ClassVar[bool]

    def __init__(self, params: ChannelParams, key: Identity, store: ChannelStore, status: str = OPEN) -> None:
        own_key = params.key_a if self.is_a else params.key_b
        if key.public_key != own_key:
            raise ValueError(f"this key is not party {'A' if self.is_a else 'B'}'s key of the channel")
        self.params = params
        self._params_record = params.to_dict()  # rewritten with every state: build it once
        self.key = key
        self.store = store
        self.status = status
        self._lock = trio.Lock()  # one state change per channel at a time, persisted in order

    @property
    def channel_id(self) -> int:
        return self.params.channel_id

    @property
    def counterparty_key(self) -> bytes:
        return self.params.key_b if self.is_a else self.params.key_a

    def _record(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _persist(self) -> None:
        await self.store.put(self.channel_id, self.role, self.status, self._record())

    async def set_status(self, status: str) -> None:
        async with self._lock:
            self.status = status
            await self._persist()

    def _check_close_terms(self, terms: CloseTerms) -> None:
        p = self.params
        if terms.channel_id != p.channel_id:
            raise PaymentRejected("wrong_channel", "close terms name another channel")
        if min(terms.balance_a, terms.balance_b) < 0 or terms.balance_a + terms.balance_b != p.deposit_a + p.deposit_b:
            raise PaymentRejected("bad_terms", "close balances must split exactly the deposits")
        if not (1 <= terms.seqno_a <= MAX_SEQNO + 1 and 1 <= terms.seqno_b <= MAX_SEQNO + 1):
            raise PaymentRejected("bad_terms", "close seqnos out of range")

    def verify_counterparty_close(self, terms: CloseTerms, signature: bytes) -> bool:
        return verify_cell(terms.signed_part(), self.counterparty_key, signature)

    async def _sign_closing(self, terms: CloseTerms) -> bytes:
        # Once we have signed a split we stop paying/accepting: a later state could not be used anyway.
        self.status = CLOSING
        await self._persist()
        return self.key.sign(terms.signed_part().hash)


class PayerChannel(_Channel):
    role = "payer"
    is_a = True

    def __init__(self, params: ChannelParams, key: Identity, store: ChannelStore, status: str = OPEN) -> None:
        super().__init__(params, key, store, status)
        self.seqno = 0  # last persisted own seqno (0: nothing signed yet)
        self.sent = 0  # cumulative amount at that seqno
        self.latest_cp: SemiChannelBody | None = None  # B's body inside that state
        self.payee_state: SignedState | None = None  # B's signed semichannel: our evidence if B vanishes
        self._reserved = 0  # highest seqno ever handed to the store (persisted or not)

    @classmethod
    async def create(cls, params: ChannelParams, key: Identity, store: ChannelStore) -> PayerChannel:
        channel = cls(params, key, store)
        await channel._persist()
        return channel

    @classmethod
    def load(cls, store: ChannelStore, channel_id: int, key: Identity) -> PayerChannel:
        loaded = store.load(channel_id)
        if loaded is None or loaded[0] != cls.role:
            raise ChannelStateError(f"no payer channel {channel_id:032x} in {store.path}")
        _, status, rec = loaded
        channel = cls(ChannelParams.from_dict(rec["params"]), key, store, status)
        channel.seqno = channel._reserved = rec["seqno"]
        channel.sent = rec["sent"]
        channel.latest_cp = None if rec["cp"] is None else SemiChannelBody(*rec["cp"])
        channel.payee_state = _state_from_record(rec["payee_state"])
        return channel

    def _record(self) -> dict[str, Any]:
        cp = None if self.latest_cp is None else [self.latest_cp.seqno, self.latest_cp.sent]
        return {
            "params": self._params_record,
            "seqno": self.seqno,
            "sent": self.sent,
            "cp": cp,
            "payee_state": _state_to_record(self.payee_state),
        }

    async def set_payee_state(self, state: SignedState) -> None:
        """Keep B's signed semichannel (given at open and after each commit); needed to force-close."""
        if state.channel_id != self.channel_id:
            raise PaymentRejected("wrong_channel", "payee state names another channel")
        if not state.verify(self.params.key_b):
            raise PaymentRejected("bad_signature", "payee state not signed by B")
        if state.sent != 0 or state.counterparty is not None:
            raise PaymentRejected("bad_state", "B never sends in this protocol and signs no counterparty body")
        async with self._lock:
            if self.payee_state is not None and state.seqno < self.payee_state.seqno:
                raise PaymentRejected("stale_seqno", "older than the payee state we hold")
            self.payee_state = state
            await self._persist()

    @property
    def counterparty(self) -> SemiChannelBody | None:
        """B's body that our next state will carry."""
        return None if self.payee_state is None else SemiChannelBody(self.payee_state.seqno, 0)

    async def pay(self, total: int) -> SignedState:
        """Sign a new state moving the cumulative amount sent to ``total`` nanoTON (persisted first)."""
        async with self._lock:
            if self.status != OPEN:
                raise ChannelStateError(f"channel is {self.status}; no more payments")
            if not isinstance(total, int) or total <= self.sent:
                raise ChannelStateError(f"cumulative amount must grow: {total!r} after {self.sent}")
            if total > self.params.max_sent_a:
                raise ChannelStateError(f"{total} exceeds what this channel can pay ({self.params.max_sent_a})")
            seqno = self._reserved + 1
            if seqno > MAX_SEQNO:
                raise ChannelStateError("seqnos exhausted: close this channel and open another")
            # Reserve first: if the write is cut short we skip the seqno rather than risk reusing it.
            self._reserved = seqno
            previous = self.seqno, self.sent, self.latest_cp
            self.seqno, self.sent, self.latest_cp = seqno, total, self.counterparty
            try:
                await self._persist()
            except BaseException:
                self.seqno, self.sent, self.latest_cp = previous
                raise
            return self._sign(seqno, total, self.latest_cp)

    def _sign(self, seqno: int, sent: int, cp: SemiChannelBody | None) -> SignedState:
        return SignedState.sign(self.key, self.channel_id, seqno, sent, cp)

    def latest(self) -> SignedState | None:
        """Our latest persisted state, signed again (ed25519 is deterministic: the same bytes as before)."""
        return None if self.seqno == 0 else self._sign(self.seqno, self.sent, self.latest_cp)

    def close_terms(self) -> CloseTerms:
        p = self.params
        b_seqno = 0 if self.counterparty is None else self.counterparty.seqno
        return CloseTerms(p.channel_id, p.deposit_a - self.sent, p.deposit_b + self.sent, self.seqno + 1, b_seqno + 1)

    async def sign_close(self, terms: CloseTerms) -> bytes:
        async with self._lock:
            self._check_close_terms(terms)
            if terms.balance_b > self.params.deposit_b + self.sent:
                raise PaymentRejected("bad_terms", "close pays B more than we ever signed")
            return await self._sign_closing(terms)

    async def sign_commit(self, terms: CommitTerms, payee_state: SignedState) -> bytes:
        """Agree to commit our latest seqno and B's new one; ``payee_state`` is B's state at that seqno."""
        if terms.channel_id != self.channel_id or payee_state.seqno != terms.seqno_b:
            raise PaymentRejected("bad_terms", "commit terms do not match the payee state")
        if terms.seqno_a != self.seqno or self.seqno == 0:
            raise PaymentRejected("bad_terms", "commit must name our latest seqno")
        await self.set_payee_state(payee_state)
        return self.key.sign(terms.signed_part().hash)

    def evidence(self) -> tuple[Cell, Cell]:
        """(A's signed semichannel, B's signed semichannel) for an uncooperative close or a challenge."""
        latest = self.latest()
        if self.payee_state is None:
            raise ChannelStateError("no signed state from the payee: cannot close without it")
        if latest is None:  # nothing paid yet: the zero state (always the same bytes) is a valid claim
            latest = self._sign(0, 0, None)
        return latest.to_cell(), self.payee_state.to_cell()


class PayeeChannel(_Channel):
    role = "payee"
    is_a = False

    def __init__(self, params: ChannelParams, key: Identity, store: ChannelStore, status: str = OPEN) -> None:
        super().__init__(params, key, store, status)
        self.latest: SignedState | None = None  # latest accepted state of A
        self.own_seqno = 0
        self.delivered = 0  # cumulative value of the work released (or about to be), on record

    @classmethod
    async def create(cls, params: ChannelParams, key: Identity, store: ChannelStore) -> PayeeChannel:
        channel = cls(params, key, store)
        await channel._persist()
        return channel

    @classmethod
    def load(cls, store: ChannelStore, channel_id: int, key: Identity) -> PayeeChannel:
        loaded = store.load(channel_id)
        if loaded is None or loaded[0] != cls.role:
            raise ChannelStateError(f"no payee channel {channel_id:032x} in {store.path}")
        _, status, rec = loaded
        channel = cls(ChannelParams.from_dict(rec["params"]), key, store, status)
        channel.latest = _state_from_record(rec["latest"])
        channel.own_seqno = rec["own_seqno"]
        channel.delivered = rec["delivered"]
        return channel

    def _record(self) -> dict[str, Any]:
        return {
            "params": self._params_record,
            "latest": _state_to_record(self.latest),
            "own_seqno": self.own_seqno,
            "delivered": self.delivered,
        }

    @property
    def paid(self) -> int:
        """Cumulative nanoTON covered by the latest accepted state."""
        return 0 if self.latest is None else self.latest.sent

    def own_state(self) -> SignedState:
        """B's signed semichannel (sends nothing); the payer needs it to be able to force-close."""
        return SignedState.sign(self.key, self.channel_id, self.own_seqno, 0, None)

    def may_deliver(self, delivered_total: int, credit: int) -> bool:
        """Whether delivering up to ``delivered_total`` leaves at most ``credit`` unpaid."""
        return max(delivered_total, self.delivered) - self.paid <= credit

    async def reserve(self, delivered_total: int, credit: int) -> bool:
        """Record, durably, that work worth ``delivered_total`` (cumulative) is about to be delivered.

        Returns False (and records nothing) when that would leave more than ``credit`` unpaid. Call it
        before releasing a chunk no new payment came with (``accept`` records the same thing when one
        does): after a crash the payee then never underestimates what it is owed.
        """
        async with self._lock:
            if self.status != OPEN or not self.may_deliver(delivered_total, credit):
                return False
            if delivered_total > self.delivered:
                # Kept even if the write fails: overestimating what went out only makes us stricter.
                self.delivered = delivered_total
                await self._persist()
            return True

    def check(self, state: SignedState, delivered_value: int, credit: int) -> None:
        """Every acceptance rule of DESIGN.md §10; raises PaymentRejected with a stable reason."""
        p = self.params
        if state.channel_id != p.channel_id:
            raise PaymentRejected("wrong_channel", f"state is for channel {state.channel_id:032x}")
        if not state.verify(p.key_a):
            raise PaymentRejected("bad_signature", "not signed by the payer's channel key")
        last_seqno, last_sent = (0, 0) if self.latest is None else (self.latest.seqno, self.latest.sent)
        if state.seqno <= last_seqno:
            raise PaymentRejected("stale_seqno", f"seqno {state.seqno} after {last_seqno}")
        if state.seqno > MAX_SEQNO:
            raise PaymentRejected("seqno_overflow", "the contract cannot commit this seqno")
        if state.sent <= last_sent:
            raise PaymentRejected("sent_not_increasing", f"sent {state.sent} after {last_sent}")
        if state.sent > p.max_sent_a:
            raise PaymentRejected("over_deposit", f"sent {state.sent} above the usable deposit {p.max_sent_a}")
        cp = state.counterparty
        if cp is not None and (cp.sent != 0 or cp.seqno > self.own_seqno):
            raise PaymentRejected("bad_counterparty", "state claims a B state we never signed")
        delivered = max(delivered_value, self.delivered)
        if state.sent < delivered - credit:
            raise PaymentRejected("underpaid", f"sent {state.sent} < delivered {delivered} - credit {credit}")

    async def accept(self, state: SignedState, delivered_value: int, credit: int) -> None:
        """Accept ``state`` if it pays for ``delivered_value`` minus ``credit``; persist it before returning.

        ``delivered_value`` is the cumulative value of the work delivered *including* the chunk this
        payment releases, so that chunk is on record before it goes out (see ``reserve``).
        """
        async with self._lock:
            if self.status != OPEN:
                raise PaymentRejected("closed", f"channel is {self.status}")
            self.check(state, delivered_value, credit)
            previous = self.latest
            self.latest, self.delivered = state, max(self.delivered, delivered_value)
            try:
                await self._persist()
            except BaseException:
                self.latest = previous  # not accepted unless on disk (``delivered`` errs on the safe side)
                raise

    def close_terms(self) -> CloseTerms:
        p = self.params
        a_seqno = 0 if self.latest is None else self.latest.seqno
        return CloseTerms(
            p.channel_id, p.deposit_a - self.paid, p.deposit_b + self.paid, a_seqno + 1, self.own_seqno + 1
        )

    async def sign_close(self, terms: CloseTerms) -> bytes:
        async with self._lock:
            self._check_close_terms(terms)
            if terms.balance_b < self.params.deposit_b + self.paid:
                raise PaymentRejected("bad_terms", "close pays us less than the latest accepted state")
            return await self._sign_closing(terms)

    def commit_terms(self) -> CommitTerms:
        if self.latest is None:
            raise ChannelStateError("nothing to commit yet")
        return CommitTerms(self.channel_id, self.latest.seqno, self.own_seqno + 1)

    async def sign_commit(self, terms: CommitTerms) -> tuple[bytes, SignedState]:
        """Sign ``terms`` and move our own seqno to ``terms.seqno_b``; returns (signature, our new state)."""
        async with self._lock:
            if terms.channel_id != self.channel_id or self.latest is None or terms.seqno_a != self.latest.seqno:
                raise PaymentRejected("bad_terms", "commit must name the latest accepted seqno")
            if not self.own_seqno < terms.seqno_b <= MAX_SEQNO:
                raise PaymentRejected("bad_terms", "commit must move our seqno forward")
            self.own_seqno = terms.seqno_b
            await self._persist()
            return self.key.sign(terms.signed_part().hash), self.own_state()

    def evidence(self) -> tuple[Cell, Cell]:
        if self.latest is None:
            raise ChannelStateError("no payment accepted: nothing to claim on chain")
        return self.latest.to_cell(), self.own_state().to_cell()
