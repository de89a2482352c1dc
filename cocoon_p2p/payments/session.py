"""TON payment channels behind the job protocol's payment seam (``session.payment_seam``).

``ChannelPayments(peer)`` is what a peer started with ``--chain host:port`` uses: its wallet key
lives in the data dir (``wallet.key``; a devnet's faucet funds it at start), its channels in
``channels.db``, and the chain is a ``cocoon-p2p chain`` service reached through ``RemoteChain``.

- Client (party A): ``payer_for`` reuses an idle open channel to the worker or opens one (``pay.open``
  to the worker, then deploy + deposit on chain), sized from the job's budget. Idle channels are
  closed cooperatively (``pay.close``), or force-closed when the worker is gone.
- Worker (party B): answers ``pay.info`` / ``pay.open`` / ``pay.close``; ``payee_for`` checks each
  job's channel on chain once and takes its payments (``policy.ChannelSessionPayee``).
- Both: every open channel has a watcher task (challenges a stale state the other side submits,
  finishes ripe closes); after a restart the channels are reloaded from the store and resumed or closed.

Wire messages are in docs/PROTOCOL.md §9.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import trio

from ..errors import CocoonError, ConnectionClosed, RemoteError
from ..identity import Identity, PeerId
from ..identity.keystore import load_identity, save_identity
from ..net import TcpNetwork
from . import onchain
from .cells import ClosingConfig
from .chain.base import CHANNEL_OPEN
from .chain.service import RemoteChain
from .chain.wallet import Wallet
from .channel import CLOSED, OPEN, PayeeChannel, PayerChannel
from .contract_code import ensure_contract_code
from .errors import ChainError, ChannelStateError, NotSupported, PaymentRejected
from .jobs import ChannelSessionPayee, ChannelSessionPayer, CpuMeter
from .params import ChannelParams, CloseTerms, SignedState, random_channel_id
from .policy import PAYMENT_REJECTED, RPC_TIMEOUT, ChannelEntry, ChannelKeeper, check_proposal, deposit_for
from .store import ChannelStore

log = logging.getLogger(__name__)

WALLET_DIR = "wallet"  # holds the wallet's key file (identity.key format, mode 0600)
STORE_FILE = "channels.db"
MAX_PENDING_PER_CLIENT = 4  # channels a client proposed but has not opened on chain yet
SHUTDOWN_CLOSE_S = 10.0
LOCK_WAIT_S = 5.0  # a pay.close waits this long for a chain check of the channel to finish


def load_or_create_wallet_key(data_dir: Path) -> Identity:
    where = data_dir / WALLET_DIR
    if (where / "identity.key").exists():
        return load_identity(where)
    key = Identity.generate()
    save_identity(key, where)
    return key


class _MeteredStore(ChannelStore):
    """A channel store that also counts the CPU time its commits take (in their worker thread)."""

    cpu_seconds = 0.0  # written by the committing thread only (commits never overlap)

    def _write(self, rows: Any) -> None:
        started = time.thread_time()
        try:
            super()._write(rows)
        finally:
            self.cpu_seconds += time.thread_time() - started


class ChannelPayments(ChannelKeeper):
    needs_offer_wallet = True  # the client opens channels to the wallet a worker's offer names

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.config = peer.config.payments
        self.identity: Identity = peer.identity
        self.is_worker = "worker" in peer.config.roles
        self.chain_address: str = peer.config.chain
        self.backend = RemoteChain(TcpNetwork(), self.chain_address)
        self.wallet = Wallet(self.backend, load_or_create_wallet_key(peer.config.data_dir))
        self.wallet_address = self.wallet.address  # goes into the worker's offer
        self.store = _MeteredStore(peer.config.data_dir / STORE_FILE)
        self.meter = CpuMeter() if self.config.measure_cpu else None
        self.entries: dict[int, ChannelEntry] = {}
        self.code: Any = None
        self.ready = trio.Event()
        self.balance: int | None = None  # last seen wallet balance
        self.counts = {"opened": 0, "closed_cooperatively": 0, "force_closed": 0, "challenged": 0}
        self._nursery: trio.Nursery | None = None
        router = peer.host.router
        router.unary("pay.info", self._on_info)
        router.unary("pay.open", self._on_open)
        router.unary("pay.close", self._on_close)

    # ---- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.meter is not None:
            trio.lowlevel.add_instrument(self.meter)  # type: ignore[arg-type]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.code = await trio.to_thread.run_sync(ensure_contract_code)
                self._load_channels()
                self.ready.set()
                task_status.started()
                await self._fund()
                await trio.sleep_forever()
        finally:
            if self.meter is not None:
                trio.lowlevel.remove_instrument(self.meter)  # type: ignore[arg-type]
            with trio.CancelScope(shield=True):
                await self.backend.aclose()
            self.store.close()

    async def _fund(self) -> None:
        """Make sure the wallet holds something (devnet faucet); retried while the chain is away."""
        delay = 1.0
        while True:
            try:
                self.balance = await self.wallet.balance()
                if self.balance < self.config.faucet_below:
                    await self.backend.faucet(self.wallet.address, self.config.faucet_amount)
                    self.balance = await self.wallet.balance()
                    log.info("wallet %s funded by the devnet faucet: %d nanoTON", self.wallet.address, self.balance)
                return
            except NotSupported:
                log.warning("wallet %s holds %s nanoTON; fund it to pay or claim", self.wallet.address, self.balance)
                return
            except ChainError as exc:
                log.warning("chain service %s: %s (retrying)", self.chain_address, exc)
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _balance_changed(self) -> None:
        """Refresh the wallet balance shown in status and metrics after an action that moved coins."""

        async def refresh() -> None:
            try:
                self.balance = await self.wallet.balance()
            except ChainError:
                pass

        if self._nursery is not None:
            self._nursery.start_soon(refresh)

    def _load_channels(self) -> None:
        for cid in self.store.channel_ids():
            loaded = self.store.load(cid)
            if loaded is None:
                continue
            cls = PayerChannel if loaded[0] == PayerChannel.role else PayeeChannel
            try:
                channel = cls.load(self.store, cid, self.identity)
            except (ValueError, ChannelStateError) as exc:
                log.error("channel %032x in %s cannot be used with this identity: %s", cid, self.store.path, exc)
                continue
            self._add(ChannelEntry(channel, PeerId.from_public_key(channel.counterparty_key)))
        live = [e for e in self.entries.values() if e.channel.status != CLOSED]
        if live:
            log.info("reloaded %d channels (%d not closed)", len(self.entries), len(live))

    def _add(self, entry: ChannelEntry) -> None:
        entry.address = entry.channel.params.address(self.code)
        self.entries[entry.channel_id] = entry
        if entry.channel.status != CLOSED and self._nursery is not None:
            self._nursery.start_soon(self._lifecycle, entry)

    async def shutdown(self) -> None:
        """Close this client's idle channels cooperatively before the node stops (no force-close)."""
        if not self.config.close_on_shutdown:
            return
        idle = [e for e in self.entries.values() if e.is_payer and e.channel.status == OPEN and not e.busy]
        with trio.move_on_after(SHUTDOWN_CLOSE_S):
            async with trio.open_nursery() as nursery:
                for entry in idle:
                    nursery.start_soon(self._close_quietly, entry)

    async def _close_quietly(self, entry: ChannelEntry) -> None:
        try:
            await self.close(entry, fallback_force=False)
        except (CocoonError, trio.TooSlowError, OSError) as exc:
            log.info("channel %032x stays open: %s", entry.channel_id, exc)

    # ---- client: PaymentsFactory.payer_for ----------------------------------------------------

    async def payer_for(self, worker: PeerId, offer_wallet: str, budget: int) -> ChannelSessionPayer:
        await self.ready.wait()
        candidates = [
            e for e in self.entries.values()
            if e.is_payer and e.peer == worker and e.channel.status == OPEN and e.remaining() >= max(budget, 1)
        ]  # fmt: skip
        for entry in sorted(candidates, key=lambda e: -e.last_used):
            if not entry.confirmed and not entry.busy:
                try:
                    await self._confirm(entry)
                except ChainError:
                    continue
            if entry.confirmed and not entry.busy and entry.channel.status == OPEN:
                entry.take()
                return ChannelSessionPayer(entry, entry.address)
        entry = await self._open(worker, offer_wallet, budget)
        return ChannelSessionPayer(entry, entry.address)

    async def _open(self, worker: PeerId, offer_wallet: str, budget: int) -> ChannelEntry:
        cfg = self.config
        conn = await self._connect(worker)
        wallet_b = offer_wallet
        if not wallet_b:
            wallet_b = str((await conn.call("pay.info", {}, timeout=RPC_TIMEOUT)).get("wallet", ""))
        try:
            params = ChannelParams(
                random_channel_id(), self.identity.public_key, conn.channel.remote_public_key,
                self.wallet.address, wallet_b, deposit_for(budget, cfg.deposit_multiple, cfg.min_deposit,
                                                           cfg.misbehavior_fine),
                closing=ClosingConfig(cfg.quarantine_s, cfg.misbehavior_fine, cfg.conditional_close_s),
            )  # fmt: skip
        except ValueError as exc:
            raise PaymentRejected("bad_params", f"cannot open a channel to {worker.short}: {exc}") from None
        reply = await conn.call("pay.open", {"params": params.to_dict()}, timeout=RPC_TIMEOUT)
        try:
            payee_state = SignedState.from_wire(reply.get("state"))
        except ValueError as exc:
            raise RemoteError("bad_reply", f"pay.open answered {exc}") from None
        channel = await PayerChannel.create(params, self.identity, self.store)  # on disk before any coin moves
        entry = ChannelEntry(channel, worker)
        entry.take()
        try:
            await channel.set_payee_state(payee_state)
            await onchain.open_channel(self.backend, self.wallet, self.identity, params, self.code)
        except BaseException:
            entry.free()  # the watcher settles it: open on chain after all, or never opened
            self._add(entry)
            raise
        entry.confirmed = True
        self.counts["opened"] += 1
        self._add(entry)
        log.info("opened channel %032x to %s with %d nanoTON", params.channel_id, worker.short, params.deposit_a)
        self._balance_changed()
        return entry

    async def _connect(self, peer_id: PeerId) -> Any:
        host = self.peer.host
        conn = host.connection_for(peer_id)
        if conn is not None:
            return conn
        for address in await self.peer.dht.find_peer(peer_id):
            try:
                return await host.connect(address, expected=peer_id)
            except (CocoonError, OSError):
                continue
        raise ConnectionClosed(f"cannot reach {peer_id.short}")

    async def _confirm(self, entry: ChannelEntry) -> bool:
        """Whether the channel is open on chain holding at least the agreed deposit of A."""
        if await self.backend.get_channel_state(entry.address) != CHANNEL_OPEN:
            return False
        data = await self.backend.get_channel_data(entry.address)
        p = entry.channel.params
        entry.confirmed = (data.channel_id, data.key_a, data.key_b) == (p.channel_id, p.key_a, p.key_b) and (
            data.balance_a >= p.deposit_a
        )
        return entry.confirmed

    # ---- worker: PaymentsFactory.payee_for and the pay.* RPCs -------------------------------

    async def payee_for(self, client: PeerId) -> ChannelSessionPayee:
        return ChannelSessionPayee(self, client, self.meter, self.config.persist_slack)

    async def payee_entry(self, channel_id: int, client: PeerId) -> ChannelEntry:
        """The channel a job names, checked on chain the first time (raises RemoteError)."""
        await self.ready.wait()
        entry = self.entries.get(channel_id)
        if entry is None or entry.is_payer or entry.peer != client:
            raise RemoteError(PAYMENT_REJECTED, "no channel with this id from you (pay.open first)")
        if not entry.confirmed:
            try:
                confirmed = await self._confirm(entry)
            except ChainError as exc:
                raise RemoteError(PAYMENT_REJECTED, f"cannot check the channel on chain now: {exc}") from None
            if not confirmed:
                raise RemoteError(PAYMENT_REJECTED, "the channel is not open on chain with the agreed deposit")
        return entry

    async def _on_info(self, ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {"wallet": self.wallet.address, "min_quarantine_s": self.config.min_quarantine_s}

    async def _on_open(self, ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        if not self.is_worker:
            raise RemoteError("not_worker", "this peer sells no inference")
        await self.ready.wait()
        try:
            proposal = ChannelParams.from_dict(params["params"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RemoteError("bad_params", f"malformed channel params: {exc}") from None
        check_proposal(
            proposal, client=ctx.peer_id, own_key=self.identity.public_key, own_wallet=self.wallet.address,
            min_quarantine=self.config.min_quarantine_s,
        )  # fmt: skip
        if proposal.channel_id in self.entries or self.store.load(proposal.channel_id) is not None:
            raise RemoteError("duplicate", "a channel with this id exists")
        pending = [
            e for e in self.entries.values()
            if not e.is_payer and e.peer == ctx.peer_id and not e.confirmed and e.channel.status == OPEN
        ]  # fmt: skip
        if len(pending) >= MAX_PENDING_PER_CLIENT:
            raise RemoteError("too_many_pending", "open the channels you already proposed first")
        channel = await PayeeChannel.create(proposal, self.identity, self.store)
        self._add(ChannelEntry(channel, ctx.peer_id))
        log.info("channel %032x proposed by %s (%d nanoTON)", proposal.channel_id, ctx.peer_id.short,
                 proposal.deposit_a)  # fmt: skip
        return {"state": channel.own_state().to_wire()}

    async def _on_close(self, ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        await self.ready.wait()
        cid, raw_terms, sig = params.get("cid"), params.get("terms"), params.get("sig")
        if not (isinstance(cid, bytes) and len(cid) == 16 and isinstance(raw_terms, dict) and isinstance(sig, bytes)):
            raise RemoteError("bad_request", "pay.close takes {cid: bin(16), terms: map, sig: bin(64)}")
        entry = self.entries.get(int.from_bytes(cid, "big"))
        if entry is None or entry.peer != ctx.peer_id:
            raise RemoteError("unknown_channel", "no such channel with you")
        with trio.move_on_after(LOCK_WAIT_S):
            async with entry.lock:  # the watcher must not see it signed but not yet held
                return await self._co_sign_close(entry, raw_terms, sig, ctx.peer_id)
        raise RemoteError("channel_busy", "this channel is being closed or checked; try again")

    async def _co_sign_close(self, entry: ChannelEntry, raw_terms: dict[str, Any], sig: bytes,
                             peer: PeerId) -> dict[str, Any]:  # fmt: skip
        if entry.busy:
            raise RemoteError("channel_busy", "a job is using this channel")
        try:
            values = [raw_terms[k] for k in ("balance_a", "balance_b", "seqno_a", "seqno_b")]
            if not all(type(v) is int for v in values):
                raise TypeError("amounts and seqnos are integers")
            terms = CloseTerms(entry.channel_id, *values)
        except (KeyError, TypeError) as exc:
            raise RemoteError("bad_terms", str(exc)) from None
        channel = entry.channel
        if not channel.verify_counterparty_close(terms, sig):
            raise RemoteError("bad_signature", "the close terms are not signed by the other party")
        try:
            mine = await channel.sign_close(terms)
        except PaymentRejected as exc:
            raise RemoteError("bad_terms", str(exc)) from None
        sig_a, sig_b = (mine, sig) if entry.is_payer else (sig, mine)
        entry.held_close = (terms, sig_a, sig_b, trio.current_time())
        log.info("channel %032x: co-signed a close proposed by %s", entry.channel_id, peer.short)
        return {"sig": mine}

    # ---- admin, status, metrics ---------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        try:
            self.balance = await self.wallet.balance()
        except ChainError:
            pass  # report the last balance seen
        live = [e for e in self.entries.values() if e.channel.status != CLOSED]
        payer = [e for e in live if e.is_payer]
        return {
            "mode": "ton-channels",
            "chain": self.chain_address,
            "wallet": self.wallet.address,
            "wallet_balance_nanoton": self.balance,
            "channels_open": len(live),
            "locked_nanoton": sum(e.remaining() for e in payer),
            "paid_nanoton": sum(e.amount for e in payer),
            "earned_unclaimed_nanoton": sum(e.amount for e in live if not e.is_payer),
            **self.counts,
        }

    def cpu_seconds(self) -> float:
        return (self.meter.seconds if self.meter is not None else 0.0) + self.store.cpu_seconds

    def metrics_lines(self) -> list[str]:
        live = [e for e in self.entries.values() if e.channel.status != CLOSED]
        lines = [
            f"cocoon_payment_channels_open {len(live)}",
            f"cocoon_payment_channels_moved_nanoton {sum(e.amount for e in live)}",
            f"cocoon_payments_cpu_seconds_total {self.cpu_seconds():.6f}",
            f"cocoon_payments_store_cpu_seconds_total {self.store.cpu_seconds:.6f}",
        ]
        if self.balance is not None:
            lines.append(f"cocoon_wallet_balance_nanoton {self.balance}")
        return lines + [f"cocoon_payment_channels_{k}_total {v}" for k, v in self.counts.items()]
