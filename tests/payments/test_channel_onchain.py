"""The real contract in the embedded emulator: open, pay off-chain, close every way it can close."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoon_p2p.payments import onchain
from cocoon_p2p.payments.chain.base import (
    CHANNEL_AWAITING_FINALIZATION,
    CHANNEL_CLOSURE_STARTED,
    CHANNEL_OPEN,
    CHANNEL_SETTLING_CONDITIONALS,
    CHANNEL_UNINITED,
    Receipt,
)
from cocoon_p2p.payments.channel import CLOSED, CLOSING, PayeeChannel
from cocoon_p2p.payments.errors import ChainActionFailed

from .helpers import CHUNK, DEPOSIT, open_parties

MAX_FORWARD_FEE = 10_000_000  # a payout message costs far less than 0.01 TON to forward


def payout(receipt: Receipt, channel: str, wallet: str) -> int:
    """Value of the channel's payout message to ``wallet`` in this trace."""
    tx = receipt.tx_at(channel)
    assert tx is not None and tx.success
    values = [value for dest, value, _ in tx.outgoing if dest == wallet]
    assert len(values) == 1
    return values[0]


def assert_conservation(receipt: Receipt, channel: str, balance_before: int) -> None:
    """Everything the channel held went out as payouts, forwarding fees and the closing transaction's fees."""
    tx = receipt.tx_at(channel)
    assert tx is not None
    assert balance_before + tx.value_in == sum(v + fwd for _, v, fwd in tx.outgoing) + tx.fees


async def test_open_thousand_payments_cooperative_close(tmp_path: Path) -> None:
    p = await open_parties(tmp_path)
    data = await p.chain.get_channel_data(p.address)
    assert (data.state, data.balance_a, data.balance_b, data.channel_id) == (
        CHANNEL_OPEN,
        DEPOSIT,
        0,
        p.params.channel_id,
    )
    assert (data.address_a, data.address_b) == (p.wallet_a.address, p.wallet_b.address)

    await p.pay_chunks(1000)
    assert p.payee.paid == p.payer.sent == 1000 * CHUNK

    terms = p.payer.close_terms()
    assert terms == p.payee.close_terms()
    sig_a = await p.payer.sign_close(terms)
    assert p.payee.verify_counterparty_close(terms, sig_a)
    sig_b = await p.payee.sign_close(terms)
    held = await p.chain.balance(p.address)
    before_a, before_b = await p.wallet_a.balance(), await p.wallet_b.balance()

    receipt = await onchain.close_cooperatively(p.chain, p.params, p.code, terms, sig_a, sig_b)

    to_b = payout(receipt, p.address, p.wallet_b.address)
    to_a = payout(receipt, p.address, p.wallet_a.address)
    assert 0 < terms.balance_b - to_b < MAX_FORWARD_FEE  # B gets its balance minus the forwarding fee
    assert to_a > terms.balance_a  # A gets its balance plus the unspent gas reserve
    assert_conservation(receipt, p.address, held)
    assert await p.chain.balance(p.address) == 0
    assert await p.wallet_b.balance() - before_b == to_b  # B's wallet is not deployed: no fees on receipt
    a_tx = receipt.tx_at(p.wallet_a.address)
    assert a_tx is not None and await p.wallet_a.balance() - before_a == to_a - a_tx.fees
    assert await p.chain.get_channel_state(p.address) == CHANNEL_UNINITED


async def test_client_vanishes_worker_force_closes_and_is_paid(tmp_path: Path) -> None:
    p = await open_parties(tmp_path)
    await p.pay_chunks(25)
    del p.payer  # the client is gone
    watcher = onchain.ChannelWatcher(p.chain, p.payee, p.wallet_b, p.code)

    await onchain.force_close(p.chain, p.wallet_b, p.payee, p.code)
    assert p.payee.status == CLOSING
    assert await p.chain.get_channel_state(p.address) == CHANNEL_CLOSURE_STARTED
    assert await watcher.check() is None  # still in quarantine: nothing to do yet

    await p.wait_out_quarantine()
    held = await p.chain.balance(p.address)
    before_b = await p.wallet_b.balance()
    assert await watcher.check() == "finished"
    assert p.payee.status == CLOSED

    # finish is an external message: the contract pays for it, so the watcher's receipt is not needed
    gained = await p.wallet_b.balance() - before_b
    assert 0 < 25 * CHUNK - gained < MAX_FORWARD_FEE
    assert await p.chain.balance(p.address) == 0
    assert held > DEPOSIT


async def test_worker_vanishes_client_force_closes_and_gets_the_rest(tmp_path: Path) -> None:
    p = await open_parties(tmp_path)
    await p.pay_chunks(40)
    del p.payee  # the worker is gone
    await onchain.force_close(p.chain, p.wallet_a, p.payer, p.code)
    watcher = onchain.ChannelWatcher(p.chain, p.payer, p.wallet_a, p.code)
    assert await watcher.check() is None

    await p.wait_out_quarantine()
    held = await p.chain.balance(p.address)
    before_a, before_b = await p.wallet_a.balance(), await p.wallet_b.balance()
    receipt = await onchain.finish_uncooperative_close(p.chain, p.params, p.code)
    to_a = payout(receipt, p.address, p.wallet_a.address)
    to_b = payout(receipt, p.address, p.wallet_b.address)
    assert_conservation(receipt, p.address, held)
    assert 0 < 40 * CHUNK - to_b < MAX_FORWARD_FEE
    assert to_a > DEPOSIT - 40 * CHUNK
    b_tx = receipt.tx_at(p.wallet_b.address)
    assert b_tx is not None and b_tx.fees > 0  # storage fee: an hour passed on the chain
    assert await p.wallet_b.balance() - before_b == to_b - b_tx.fees
    assert await p.wallet_a.balance() > before_a
    assert await watcher.check() == "closed"


async def test_stale_state_is_challenged_and_fined(tmp_path: Path) -> None:
    p = await open_parties(tmp_path)
    early = (await p.pay_chunks(5))[-1]
    await p.pay_chunks(15)
    assert p.payee.latest is not None and p.payee.latest.sent == 20 * CHUNK
    # The client cheats: it submits its state from after 5 chunks as if it were its latest.
    payee_state = p.payer.payee_state
    assert payee_state is not None
    await onchain.start_uncooperative_close(
        p.chain, p.wallet_a, p.key_a, True, p.params, p.code, early.to_cell(), payee_state.to_cell()
    )
    watcher = onchain.ChannelWatcher(p.chain, p.payee, p.wallet_b, p.code)
    assert await watcher.check() == "challenged"
    quarantine = (await p.chain.get_channel_data(p.address)).quarantine
    assert quarantine is not None and quarantine.challenged
    fine = p.params.closing.misbehavior_fine
    assert quarantine.state_a.seqno == 20
    assert quarantine.state_a.sent == 20 * CHUNK + fine
    assert await watcher.check() is None  # challenged once; nothing more to do until the close is ripe

    await p.wait_out_quarantine()
    before_b = await p.wallet_b.balance()
    assert await watcher.check() == "finished"
    gained = await p.wallet_b.balance() - before_b
    assert 0 < 20 * CHUNK + fine - gained < MAX_FORWARD_FEE


async def test_cooperative_commit_then_force_close(tmp_path: Path) -> None:
    p = await open_parties(tmp_path)
    old = (await p.pay_chunks(10))[-1]
    terms = p.payee.commit_terms()
    sig_b, new_payee_state = await p.payee.sign_commit(terms)
    sig_a = await p.payer.sign_commit(terms, new_payee_state)
    await onchain.commit_cooperatively(p.chain, p.params, p.code, terms, sig_a, sig_b)
    data = await p.chain.get_channel_data(p.address)
    assert (data.committed_seqno_a, data.committed_seqno_b) == (10, 1)

    await p.pay_chunks(5)
    # the payer's states now carry B's new seqno, and the payee's evidence is accepted by the contract
    assert p.payer.latest_cp is not None and p.payer.latest_cp.seqno == 1
    await onchain.force_close(p.chain, p.wallet_b, p.payee, p.code)
    quarantine = (await p.chain.get_channel_data(p.address)).quarantine
    assert quarantine is not None and quarantine.state_a.sent == 15 * CHUNK
    assert old.seqno < data.committed_seqno_a + 1


async def test_payee_restart_keeps_its_claim(tmp_path: Path) -> None:
    p = await open_parties(tmp_path)
    await p.pay_chunks(7)
    p.store_b.close()
    from cocoon_p2p.payments.store import ChannelStore

    reopened = ChannelStore(tmp_path / "worker.db")
    payee = PayeeChannel.load(reopened, p.params.channel_id, p.key_b)
    assert payee.paid == 7 * CHUNK and payee.delivered == 8 * CHUNK  # the 8th chunk went out on credit
    await onchain.force_close(p.chain, p.wallet_b, payee, p.code)
    await p.wait_out_quarantine()
    await onchain.finish_uncooperative_close(p.chain, p.params, p.code)
    assert await p.chain.get_channel_state(p.address) == CHANNEL_UNINITED


async def test_settle_window_between_quarantine_and_finish() -> None:
    p = await open_parties()
    await p.pay_chunks(3)
    await onchain.force_close(p.chain, p.wallet_b, p.payee, p.code)
    await p.chain.advance_time(p.params.closing.quarantine_duration + 1)
    assert await p.chain.get_channel_state(p.address) == CHANNEL_SETTLING_CONDITIONALS
    await onchain.settle_conditionals(p.chain, p.wallet_a, p.key_a, True, p.params, p.code)  # nothing to settle
    quarantine = (await p.chain.get_channel_data(p.address)).quarantine
    assert quarantine is not None and quarantine.state_a.sent == 3 * CHUNK  # the contract rewrote it unchanged
    with pytest.raises(ChainActionFailed):
        await onchain.finish_uncooperative_close(p.chain, p.params, p.code)  # the settling window is still open
    await p.chain.advance_time(p.params.closing.conditional_close_duration)
    assert await p.chain.get_channel_state(p.address) == CHANNEL_AWAITING_FINALIZATION
    await onchain.finish_uncooperative_close(p.chain, p.params, p.code)
