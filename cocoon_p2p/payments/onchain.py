"""On-chain channel actions: open, cooperative close/commit, force close, challenge, finish.

Every action confirms its effect through the contract's getters (the only evidence a real network
gives) and raises :class:`ChainActionFailed` -- with the contract's exit code when the backend saw
the trace -- when the channel did not move.

Gas: cooperative close/commit and finish are external messages paid from the channel's own
balance (the ``excess_fee`` reserve); opening, force-closing and challenging are internal messages
from the acting party's wallet, whose attached value ends up in the channel and is paid out to A
at the close (the contract sends A "everything left"). A worker therefore needs a little TON in
its wallet to force-close, and gets back none of it.
"""

from __future__ import annotations

import logging

import trio
from pytoniq_core import Cell

from . import cells
from .chain.base import (
    CHANNEL_AWAITING_FINALIZATION,
    CHANNEL_CLOSURE_STARTED,
    CHANNEL_OPEN,
    CHANNEL_UNINITED,
    ChainBackend,
    OnchainChannel,
    Receipt,
)
from .chain.wallet import Wallet
from .channel import CLOSED, CLOSING, PayeeChannel, PayerChannel
from .errors import ChainActionFailed, ChannelStateError
from .params import ChannelParams, CloseTerms, CommitTerms

log = logging.getLogger(__name__)

OPEN_MARGIN = 50_000_000  # on top of deposit + excess fee: init gas and storage; returns to A at close
ACTION_VALUE = 30_000_000  # attached to force-close / challenge messages for the contract's gas

Channel = PayerChannel | PayeeChannel


def _failure(receipt: Receipt, address: str, what: str) -> ChainActionFailed:
    tx = receipt.tx_at(address)
    code = tx.exit_code if tx is not None else receipt.exit_code
    return ChainActionFailed(f"{what} did not take effect on {address}", code)


async def open_channel(
    backend: ChainBackend, wallet: Wallet, key_a: cells.Signer, params: ChannelParams, code: Cell
) -> Receipt:
    """Deploy the channel and init it with A's deposit, in one message from A's wallet."""
    if key_a.public_key != params.key_a:
        raise ValueError("open_channel needs party A's channel key")
    address = params.address(code)
    body = cells.init_channel_body(key_a, True, params.channel_id, params.deposit_a, params.deposit_b)
    value = params.deposit_a + params.excess_fee + OPEN_MARGIN
    receipt = await wallet.transfer(address, value, body, params.state_init(code))
    if await backend.get_channel_state(address) != CHANNEL_OPEN:
        raise _failure(receipt, address, "init_channel")
    data = await backend.get_channel_data(address)
    if (data.balance_a, data.balance_b, data.channel_id) != (params.deposit_a, params.deposit_b, params.channel_id):
        raise ChainActionFailed(f"channel {address} opened with unexpected data: {data}")
    return receipt


async def _expect_closed(backend: ChainBackend, address: str, receipt: Receipt, what: str) -> Receipt:
    if await backend.get_channel_state(address) != CHANNEL_UNINITED:
        raise _failure(receipt, address, what)
    return receipt


async def close_cooperatively(
    backend: ChainBackend, params: ChannelParams, code: Cell, terms: CloseTerms, signature_a: bytes, signature_b: bytes
) -> Receipt:
    """Submit a close both parties signed; the contract pays B ``balance_b`` and A the rest."""
    address = params.address(code)
    body = cells.cooperative_close_body(signature_a, signature_b, terms.signed_part())
    receipt = await backend.send_external(address, body)
    return await _expect_closed(backend, address, receipt, "cooperative_close")


async def commit_cooperatively(
    backend: ChainBackend, params: ChannelParams, code: Cell, terms: CommitTerms, signature_a: bytes, signature_b: bytes
) -> Receipt:
    address = params.address(code)
    receipt = await backend.send_external(
        address, cells.cooperative_commit_body(signature_a, signature_b, terms.signed_part())
    )
    data = await backend.get_channel_data(address)
    if (data.committed_seqno_a, data.committed_seqno_b) != (terms.seqno_a, terms.seqno_b):
        raise _failure(receipt, address, "cooperative_commit")
    return receipt


async def start_uncooperative_close(
    backend: ChainBackend,
    wallet: Wallet,
    signer: cells.Signer,
    is_a: bool,
    params: ChannelParams,
    code: Cell,
    signed_a: Cell,
    signed_b: Cell,
) -> Receipt:
    """Low level: put (A's, B's) signed semichannels into quarantine. Prefer ``force_close``."""
    address = params.address(code)
    body = cells.start_uncooperative_close_body(signer, is_a, params.channel_id, signed_a, signed_b)
    receipt = await wallet.transfer(address, ACTION_VALUE, body)
    data = await backend.get_channel_data(address)
    if data.quarantine is None or data.quarantine.committed_by_a != is_a:
        raise _failure(receipt, address, "start_uncooperative_close")
    return receipt


async def challenge_quarantined_state(
    backend: ChainBackend,
    wallet: Wallet,
    signer: cells.Signer,
    is_a: bool,
    params: ChannelParams,
    code: Cell,
    signed_a: Cell,
    signed_b: Cell,
) -> Receipt:
    """Low level: replace the quarantined state with newer signed ones (the cheater is fined)."""
    address = params.address(code)
    body = cells.challenge_body(signer, is_a, params.channel_id, signed_a, signed_b)
    receipt = await wallet.transfer(address, ACTION_VALUE, body)
    data = await backend.get_channel_data(address)
    if data.quarantine is None or not data.quarantine.challenged:
        raise _failure(receipt, address, "challenge_quarantined_state")
    return receipt


async def settle_conditionals(
    backend: ChainBackend,
    wallet: Wallet,
    signer: cells.Signer,
    is_a: bool,
    params: ChannelParams,
    code: Cell,
    conditionals: Cell | None = None,
) -> Receipt:
    """Low level: settle the counterparty's conditional payments in the window after quarantine.

    This protocol signs no conditionals, so there is never anything to settle; the call exists for
    completeness of the contract's interface (and is checked against it)."""
    address = params.address(code)
    body = cells.settle_conditionals_body(signer, is_a, params.channel_id, conditionals)
    receipt = await wallet.transfer(address, ACTION_VALUE, body)
    tx = receipt.tx_at(address)
    if tx is not None and not (tx.success and tx.exit_code == 0):
        raise _failure(receipt, address, "settle_conditionals")
    return receipt


async def finish_uncooperative_close(backend: ChainBackend, params: ChannelParams, code: Cell) -> Receipt:
    """Pay out the quarantined state once quarantine and conditional settling are over."""
    address = params.address(code)
    receipt = await backend.send_external(address, cells.finish_body())
    return await _expect_closed(backend, address, receipt, "finish_uncooperative_close")


async def force_close(backend: ChainBackend, wallet: Wallet, channel: Channel, code: Cell) -> Receipt:
    """Start an uncooperative close with our evidence (the counterparty vanished)."""
    signed_a, signed_b = channel.evidence()
    receipt = await start_uncooperative_close(
        backend, wallet, channel.key, channel.is_a, channel.params, code, signed_a, signed_b
    )
    await channel.set_status(CLOSING)
    return receipt


def _stale(channel: Channel, data: OnchainChannel) -> bool:
    """Whether the counterparty put an older state of *its own* into quarantine than we can prove."""
    q = data.quarantine
    if q is None or q.challenged or q.committed_by_a == channel.is_a:
        return False
    if isinstance(channel, PayeeChannel):
        mine = channel.latest
        theirs = q.state_a
    else:
        mine = channel.payee_state
        theirs = q.state_b
    return mine is not None and (mine.seqno > theirs.seqno or mine.sent > theirs.sent)


class ChannelWatcher:
    """Watches one channel on chain: challenges a stale quarantined state, finishes a ripe close.

    ``check()`` does one round (tests drive it after moving chain time); ``run()`` polls until the
    channel is closed.
    """

    def __init__(
        self, backend: ChainBackend, channel: Channel, wallet: Wallet, code: Cell, *, poll_interval: float = 30.0
    ) -> None:
        self.backend = backend
        self.channel = channel
        self.wallet = wallet
        self.code = code
        self.poll_interval = poll_interval
        self.address = channel.params.address(code)

    async def check(self) -> str | None:
        """One round; returns what it did: "challenged", "finished", "closed" or None."""
        state = await self.backend.get_channel_state(self.address)
        if state == CHANNEL_UNINITED:
            if self.channel.status == CLOSING:
                await self.channel.set_status(CLOSED)
                return "closed"
            return None
        if state == CHANNEL_OPEN:
            return None
        if self.channel.status != CLOSING:  # the counterparty started closing: stop paying/accepting
            await self.channel.set_status(CLOSING)
        data = await self.backend.get_channel_data(self.address)
        if state == CHANNEL_CLOSURE_STARTED and _stale(self.channel, data):
            signed_a, signed_b = self.channel.evidence()
            log.warning("channel %032x: counterparty quarantined a stale state; challenging", self.channel.channel_id)
            await challenge_quarantined_state(
                self.backend, self.wallet, self.channel.key, self.channel.is_a,
                self.channel.params, self.code, signed_a, signed_b,
            )  # fmt: skip
            return "challenged"
        if state == CHANNEL_AWAITING_FINALIZATION:
            await finish_uncooperative_close(self.backend, self.channel.params, self.code)
            await self.channel.set_status(CLOSED)
            return "finished"
        return None

    async def run(self) -> None:
        while self.channel.status != CLOSED:
            try:
                await self.check()
            except (ChainActionFailed, ChannelStateError) as exc:
                log.warning("channel %032x watcher: %s", self.channel.channel_id, exc)
            await trio.sleep(self.poll_interval)
