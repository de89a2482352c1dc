"""Every way a state or an on-chain action is refused: by the payee's rules, and by the contract itself."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cocoon_p2p.identity import Identity
from cocoon_p2p.payments import onchain
from cocoon_p2p.payments.cells import SemiChannelBody
from cocoon_p2p.payments.chain.base import CHANNEL_AWAITING_FINALIZATION, CHANNEL_OPEN
from cocoon_p2p.payments.errors import ChainActionFailed, ChannelStateError, PaymentRejected
from cocoon_p2p.payments.params import SignedState

from .helpers import CHUNK, Parties, open_parties

# exit codes of async-channel.func
NOT_AUTHORIZED, OUTDATED_STATE, TOO_LATE_FOR_CHALLENGE, TOO_EARLY_TO_CLOSE, WRONG_CHANNEL_ID = 101, 105, 111, 113, 114
RANGE_CHECK = 5


async def rejected(p: Parties, state: SignedState, delivered: int | None = None) -> str:
    delivered = p.payee.delivered if delivered is None else delivered
    with pytest.raises(PaymentRejected) as caught:
        await p.payee.accept(state, delivered, CHUNK)
    return caught.value.reason


async def test_payee_rules() -> None:
    p = await open_parties()
    await p.pay_chunks(3)
    cid, key_a = p.params.channel_id, p.key_a
    cp = p.payer.counterparty
    good_next = SignedState.sign(key_a, cid, 4, 4 * CHUNK, cp)

    assert await rejected(p, SignedState.sign(key_a, cid ^ 1, 4, 4 * CHUNK, cp)) == "wrong_channel"
    assert await rejected(p, SignedState.sign(Identity.generate(), cid, 4, 4 * CHUNK, cp)) == "bad_signature"
    assert await rejected(p, replace(good_next, sent=good_next.sent + 1)) == "bad_signature"  # tampered amount
    assert await rejected(p, SignedState.sign(key_a, cid, 3, 4 * CHUNK, cp)) == "stale_seqno"
    assert await rejected(p, SignedState.sign(key_a, cid, 4, 3 * CHUNK, cp)) == "sent_not_increasing"
    over = p.params.max_sent_a + 1
    assert await rejected(p, SignedState.sign(key_a, cid, 4, over, cp)) == "over_deposit"
    assert await rejected(p, SignedState.sign(key_a, cid, 4, 4 * CHUNK, SemiChannelBody(9, 0))) == "bad_counterparty"
    assert await rejected(p, SignedState.sign(key_a, cid, 2**32, 4 * CHUNK, cp)) == "seqno_overflow"
    # two chunks delivered since the last payment, one chunk of credit: paying for only one is too little
    assert await rejected(p, SignedState.sign(key_a, cid, 4, 4 * CHUNK, cp), delivered=6 * CHUNK) == "underpaid"

    assert p.payee.paid == 3 * CHUNK  # nothing above changed the accepted state
    await p.payee.accept(good_next, 5 * CHUNK, CHUNK)
    assert p.payee.paid == 4 * CHUNK


async def test_payer_refuses_what_it_must_not_sign() -> None:
    p = await open_parties()
    await p.pay_chunks(2)
    with pytest.raises(ChannelStateError):
        await p.payer.pay(2 * CHUNK)  # not more than before
    with pytest.raises(ChannelStateError):
        await p.payer.pay(p.params.max_sent_a + 1)
    terms = p.payer.close_terms()
    with pytest.raises(PaymentRejected):
        await p.payer.sign_close(replace(terms, balance_a=terms.balance_a - 1, balance_b=terms.balance_b + 1))
    with pytest.raises(PaymentRejected):  # the worker will not sign for less than it was paid
        await p.payee.sign_close(replace(terms, balance_a=terms.balance_a + 1, balance_b=terms.balance_b - 1))
    await p.payer.sign_close(terms)
    with pytest.raises(ChannelStateError):
        await p.payer.pay(3 * CHUNK)  # closing: no more payments


async def test_contract_refuses_wrong_channel_and_forged_states() -> None:
    p = await open_parties()
    await p.pay_chunks(3)
    signed_a, signed_b = p.payee.evidence()
    wallet_before = await p.wallet_b.balance()
    elsewhere = SignedState.sign(p.key_a, p.params.channel_id ^ 1, 9, 9 * CHUNK, None)
    with pytest.raises(ChainActionFailed) as caught:
        await onchain.start_uncooperative_close(
            p.chain, p.wallet_b, p.key_b, False, p.params, p.code, elsewhere.to_cell(), signed_b
        )
    assert caught.value.exit_code == WRONG_CHANNEL_ID

    forged = SignedState.sign(p.key_b, p.params.channel_id, 9, 9 * CHUNK, None)  # "A's" state signed by B
    with pytest.raises(ChainActionFailed) as caught:
        await onchain.start_uncooperative_close(
            p.chain, p.wallet_b, p.key_b, False, p.params, p.code, forged.to_cell(), signed_b
        )
    assert caught.value.exit_code == NOT_AUTHORIZED

    with pytest.raises(ChainActionFailed) as caught:  # the outer signature is not B's
        await onchain.start_uncooperative_close(
            p.chain, p.wallet_b, Identity.generate(), False, p.params, p.code, signed_a, signed_b
        )
    assert caught.value.exit_code == NOT_AUTHORIZED
    assert await p.chain.get_channel_state(p.address) == CHANNEL_OPEN
    assert (await p.chain.get_channel_data(p.address)).quarantine is None
    # the refused messages bounced their value back: three attempts cost less than the values they carried
    lost = wallet_before - await p.wallet_b.balance()
    assert 0 < lost < 3 * onchain.ACTION_VALUE


async def test_late_challenge_and_early_finish_are_refused() -> None:
    p = await open_parties()
    early = (await p.pay_chunks(2))[-1]
    await p.pay_chunks(2)
    payee_state = p.payer.payee_state
    assert payee_state is not None
    await onchain.start_uncooperative_close(
        p.chain, p.wallet_a, p.key_a, True, p.params, p.code, early.to_cell(), payee_state.to_cell()
    )
    with pytest.raises(ChainActionFailed) as caught:
        await onchain.finish_uncooperative_close(p.chain, p.params, p.code)
    assert caught.value.exit_code == TOO_EARLY_TO_CLOSE

    await p.chain.advance_time(p.params.closing.quarantine_duration + 1)
    signed_a, signed_b = p.payee.evidence()
    with pytest.raises(ChainActionFailed) as caught:
        await onchain.challenge_quarantined_state(
            p.chain, p.wallet_b, p.key_b, False, p.params, p.code, signed_a, signed_b
        )
    assert caught.value.exit_code == TOO_LATE_FOR_CHALLENGE
    quarantine = (await p.chain.get_channel_data(p.address)).quarantine
    assert quarantine is not None and quarantine.state_a.sent == 2 * CHUNK  # the stale state stands


async def test_state_older_than_a_commit_is_outdated() -> None:
    p = await open_parties()
    old = (await p.pay_chunks(3))[-1]
    await p.pay_chunks(2)
    terms = p.payee.commit_terms()
    sig_b, new_state = await p.payee.sign_commit(terms)
    await onchain.commit_cooperatively(
        p.chain, p.params, p.code, terms, await p.payer.sign_commit(terms, new_state), sig_b
    )
    with pytest.raises(ChainActionFailed) as caught:
        await onchain.start_uncooperative_close(
            p.chain, p.wallet_a, p.key_a, True, p.params, p.code, old.to_cell(), new_state.to_cell()
        )
    assert caught.value.exit_code == OUTDATED_STATE


async def test_why_sent_must_stay_within_the_deposit() -> None:
    """The contract bug of DESIGN.md §9: a state sending more than A's deposit can never be paid out."""
    p = await open_parties()
    too_much = SignedState.sign(p.key_a, p.params.channel_id, 1, p.params.deposit_a + 1, None)
    with pytest.raises(PaymentRejected):
        await p.payee.accept(too_much, 0, CHUNK)  # our payee refuses it...
    await onchain.start_uncooperative_close(  # ...because on chain it would lock the funds forever
        p.chain, p.wallet_b, p.key_b, False, p.params, p.code, too_much.to_cell(), p.payee.own_state().to_cell()
    )
    await p.wait_out_quarantine()
    with pytest.raises(ChainActionFailed) as caught:
        await onchain.finish_uncooperative_close(p.chain, p.params, p.code)
    assert caught.value.exit_code == RANGE_CHECK
    assert await p.chain.get_channel_state(p.address) == CHANNEL_AWAITING_FINALIZATION
