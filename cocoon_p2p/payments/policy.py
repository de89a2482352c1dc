"""Channel policy: one entry per channel, who may open what, and when channels close.

A client (party A) keeps one channel per worker it buys from and reuses it job after job; one
channel serves one job at a time (a second concurrent job to the same worker gets a channel of its
own). A new channel's deposit is a multiple of the awarded job's budget. A client closes a channel
cooperatively once it has been idle for ``idle_close_s`` (and at shutdown); when the worker cannot
be reached it force-closes. A worker closes one holding unclaimed earnings after
``payee_idle_close_s``. Every channel that is not closed has a watcher task: it challenges a stale
state the other side put into quarantine and finishes ripe closes; after a restart it also settles
channels left half-open or half-closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import CocoonError, ConfigError, ConnectionClosed, RemoteError
from ..identity import PeerId
from . import onchain
from .chain.base import CHANNEL_OPEN, CHANNEL_UNINITED, ChainBackend
from .chain.wallet import Wallet
from .channel import CLOSED, OPEN, PayeeChannel, PayerChannel
from .errors import ChainError, ChannelStateError, PaymentRejected
from .params import ChannelParams, CloseTerms

log = logging.getLogger(__name__)
RPC_TIMEOUT = 15.0
PAYMENT_REJECTED = "payment_rejected"  # the job protocol's error code (session.protocol)


@dataclass
class ChannelEntry:
    """A channel this node is party to, with what only the running node knows about it."""

    channel: PayerChannel | PayeeChannel
    peer: PeerId  # the counterparty
    busy: bool = False  # a job is using it
    last_used: float = field(default_factory=trio.current_time)
    confirmed: bool = False  # seen open on chain with the agreed deposit
    created: float = field(default_factory=trio.current_time)
    # A cooperative close both parties signed that we may submit ourselves: (terms, sig_a, sig_b, when).
    held_close: tuple[CloseTerms, bytes, bytes, float] | None = None
    freed: trio.Event = field(default_factory=trio.Event)
    lock: trio.Lock = field(default_factory=trio.Lock)  # one chain action (close, force, watch) at a time
    address: str = ""  # the contract's address, filled in once the code is known

    @property
    def is_payer(self) -> bool:
        return isinstance(self.channel, PayerChannel)

    @property
    def channel_id(self) -> int:
        return self.channel.channel_id

    @property
    def amount(self) -> int:
        """Cumulative nanoTON moved to the worker: signed (payer) or accepted (payee)."""
        ch = self.channel
        return ch.sent if isinstance(ch, PayerChannel) else ch.paid

    def remaining(self) -> int:
        return self.channel.params.max_sent_a - self.amount

    def take(self) -> None:
        self.busy = True
        self.freed = trio.Event()

    def free(self) -> None:
        self.busy = False
        self.last_used = trio.current_time()
        self.freed.set()

    def describe(self) -> dict[str, Any]:
        p = self.channel.params
        out: dict[str, Any] = {
            "id": f"{p.channel_id:032x}",
            "role": "client (A, pays)" if self.is_payer else "worker (B, paid)",
            "status": self.channel.status,
            "peer": str(self.peer),
            "deposit_nanoton": p.deposit_a,
            "moved_nanoton": self.amount,
            "remaining_nanoton": self.remaining(),
            "busy": self.busy,
            "confirmed_on_chain": self.confirmed,
            "contract": self.address,
            "idle_s": round(trio.current_time() - self.last_used, 1),
        }
        if isinstance(self.channel, PayeeChannel):
            out["delivered_nanoton"] = self.channel.delivered
        return out


def deposit_for(budget: int, multiple: int, minimum: int, fine: int) -> int:
    """A new channel's deposit: room for ``multiple`` jobs like this one, and the fine kept aside."""
    return max(minimum, multiple * max(budget, 0)) + fine


def check_proposal(params: ChannelParams, *, client: PeerId, own_key: bytes, own_wallet: str,
                   min_quarantine: int) -> None:  # fmt: skip
    """What a worker checks in ``pay.open`` before storing a channel (raises RemoteError)."""
    if params.key_b != own_key:
        raise RemoteError("wrong_key", "key_b must be this worker's identity key")
    if params.address_b != own_wallet:
        raise RemoteError("wrong_wallet", f"this worker's wallet is {own_wallet}")
    if PeerId.from_public_key(params.key_a) != client:
        raise RemoteError("not_client", "key_a must be the caller's identity key")
    if params.closing.quarantine_duration < min_quarantine:
        raise RemoteError("quarantine_too_short", f"quarantine must be at least {min_quarantine} s")
    if params.closing.conditional_close_duration <= 0:
        raise RemoteError("bad_params", "the settling window must be positive")


def _terms_wire(terms: CloseTerms) -> dict[str, int]:
    return {"balance_a": terms.balance_a, "balance_b": terms.balance_b, "seqno_a": terms.seqno_a,
            "seqno_b": terms.seqno_b}  # fmt: skip


class ChannelKeeper:
    """Closing and watching, for ``ChannelPayments`` (which provides these attributes)."""

    backend: ChainBackend
    wallet: Wallet
    code: Any
    config: Any  # node.config.PaymentsConfig
    counts: dict[str, int]
    balance: int | None
    entries: dict[int, ChannelEntry]

    async def _connect(self, peer_id: PeerId) -> Any:
        raise NotImplementedError

    def _balance_changed(self) -> None:
        raise NotImplementedError

    def find(self, prefix: str) -> ChannelEntry:
        prefix = prefix.strip().lower()
        matches = [e for cid, e in self.entries.items() if len(prefix) >= 4 and f"{cid:032x}".startswith(prefix)]
        if len(matches) != 1:
            raise ConfigError(f"no single channel matches {prefix!r}; `cocoon-p2p channels` lists them")
        return matches[0]

    def admin_commands(self) -> dict[str, Any]:
        async def channels(_: dict[str, str]) -> dict[str, Any]:
            return {**await self.status(), "channels": [e.describe() for e in self.entries.values()]}

        async def close(args: dict[str, str]) -> dict[str, Any]:
            return await self.close(self.find(args.get("id", "")), fallback_force=False)

        async def force(args: dict[str, str]) -> dict[str, Any]:
            return await self.force_close(self.find(args.get("id", "")))

        return {"channels": channels, "channels/close": close, "channels/force_close": force}

    async def status(self) -> dict[str, Any]:
        raise NotImplementedError

    # ---- closing ----------------------------------------------------------------------------

    async def close(self, entry: ChannelEntry, *, fallback_force: bool = True) -> dict[str, Any]:
        """Close cooperatively; when the other side cannot be reached, force-close (if allowed)."""
        async with entry.lock:
            return await self._close_locked(entry, fallback_force=fallback_force)

    async def _close_locked(self, entry: ChannelEntry, *, fallback_force: bool) -> dict[str, Any]:
        if entry.channel.status == CLOSED:
            return {"id": f"{entry.channel_id:032x}", "how": "already closed"}
        if entry.busy:
            raise ChannelStateError("a job is using this channel; try again when it is idle")
        entry.take()  # no job starts on it meanwhile
        try:
            try:
                return await self._close_cooperatively(entry)
            except (ConnectionClosed, trio.TooSlowError, OSError) as exc:
                # Unreachable: force. A peer that answered (busy, refusing) is asked again later.
                if not fallback_force or (not entry.is_payer and entry.amount < self.config.min_force_claim):
                    raise  # (a worker does not spend gas on the chain to claim less than that)
                log.warning("channel %032x: the other side is unreachable (%s); force-closing", entry.channel_id, exc)
                return await self._force(entry)
        finally:
            entry.free()

    async def _close_cooperatively(self, entry: ChannelEntry) -> dict[str, Any]:
        channel = entry.channel
        conn = await self._connect(entry.peer)  # before signing: an unreachable peer leaves the channel usable
        terms = channel.close_terms()
        mine = await channel.sign_close(terms)  # CLOSING from here on, persisted
        reply = await conn.call(
            "pay.close", {"cid": entry.channel_id.to_bytes(16, "big"), "terms": _terms_wire(terms), "sig": mine},
            timeout=RPC_TIMEOUT,
        )  # fmt: skip
        theirs = reply.get("sig")
        if not isinstance(theirs, bytes) or not channel.verify_counterparty_close(terms, theirs):
            raise PaymentRejected("bad_signature", "the counterparty's close signature does not verify")
        entry.held_close = (terms, *((mine, theirs) if entry.is_payer else (theirs, mine)), trio.current_time())
        return await self._submit_close(entry)

    async def _submit_close(self, entry: ChannelEntry) -> dict[str, Any]:
        assert entry.held_close is not None
        terms, sig_a, sig_b, _ = entry.held_close
        channel = entry.channel
        receipt = await onchain.close_cooperatively(self.backend, channel.params, self.code, terms, sig_a, sig_b)
        await channel.set_status(CLOSED)
        entry.held_close = None
        self.counts["closed_cooperatively"] += 1
        self._balance_changed()
        p = channel.params
        report: dict[str, Any] = {
            "id": f"{entry.channel_id:032x}", "how": "cooperative", "contract": entry.address,
            "deposit_nanoton": p.deposit_a, "balance_a": terms.balance_a, "balance_b": terms.balance_b,
            "paid_to_worker_nanoton": terms.balance_b - p.deposit_b,
        }  # fmt: skip
        tx = receipt.tx_at(entry.address)
        if tx is not None:
            for name, wallet in (("a", p.address_a), ("b", p.address_b)):
                values = [value for dest, value, _ in tx.outgoing if dest == wallet]
                landed = receipt.tx_at(wallet)
                report[f"payout_{name}"] = sum(values)
                report[f"fees_{name}"] = landed.fees if landed is not None else 0
        log.info("channel %032x closed cooperatively: %d nanoTON to the worker", entry.channel_id, terms.balance_b)
        return report

    async def force_close(self, entry: ChannelEntry) -> dict[str, Any]:
        async with entry.lock:
            if entry.busy:
                raise ChannelStateError("a job is using this channel; try again when it is idle")
            return await self._force(entry)

    async def _force(self, entry: ChannelEntry) -> dict[str, Any]:
        await onchain.force_close(self.backend, self.wallet, entry.channel, self.code)
        self.counts["force_closed"] += 1
        self._balance_changed()
        closing = entry.channel.params.closing
        log.warning("channel %032x force-closed: paid out after the quarantine", entry.channel_id)
        return {
            "id": f"{entry.channel_id:032x}", "how": "force", "contract": entry.address,
            "claimed_nanoton": entry.amount,
            "payout_after_s": closing.quarantine_duration + closing.conditional_close_duration,
        }  # fmt: skip

    # ---- watching -----------------------------------------------------------------------------

    async def _lifecycle(self, entry: ChannelEntry) -> None:
        watcher = onchain.ChannelWatcher(self.backend, entry.channel, self.wallet, self.code)
        while entry.channel.status != CLOSED:
            try:
                async with entry.lock:
                    await self._tick(entry, watcher)
            except (CocoonError, trio.TooSlowError, OSError) as exc:
                log.warning("channel %032x: %s", entry.channel_id, exc)
            if entry.channel.status == CLOSED:
                break
            await trio.sleep(self.config.watch_interval_s)
        log.info("channel %032x closed", entry.channel_id)

    async def _tick(self, entry: ChannelEntry, watcher: onchain.ChannelWatcher) -> None:
        channel, cfg, now = entry.channel, self.config, trio.current_time()
        done = await watcher.check()  # challenges a stale quarantined state, finishes a ripe close
        if done is not None:
            log.info("channel %032x: %s", entry.channel_id, done)
            if done == "challenged":
                self.counts["challenged"] += 1
            self._balance_changed()
        if channel.status == CLOSED:
            return
        state = await self.backend.get_channel_state(entry.address)
        if state == CHANNEL_UNINITED:
            # Never opened (an open cut short, a proposal never funded) or closed while we were away.
            stale = entry.is_payer or entry.confirmed or now - entry.created >= cfg.open_timeout_s
            if channel.status == OPEN and stale:
                await channel.set_status(CLOSED)
            return
        if state != CHANNEL_OPEN:
            return  # closing on chain: the watcher does the rest
        if channel.status == OPEN:
            if not entry.confirmed:
                await self._confirm(entry)
            limit = cfg.idle_close_s if entry.is_payer else cfg.payee_idle_close_s
            if not entry.busy and limit > 0 and now - entry.last_used >= limit and (entry.is_payer or entry.amount):
                log.info("channel %032x idle for %.0f s: closing", entry.channel_id, now - entry.last_used)
                await self._close_locked(entry, fallback_force=True)
            return
        # We signed a close that has not landed (the other side never submitted it, or we crashed).
        if entry.held_close is not None:
            if now - entry.held_close[3] >= cfg.close_grace_s:
                try:
                    await self._submit_close(entry)
                except ChainError as exc:
                    log.warning("channel %032x: the co-signed close failed (%s); force-closing", entry.channel_id, exc)
                    await self._force(entry)
        elif entry.is_payer or entry.amount:
            await self._close_locked(entry, fallback_force=True)

