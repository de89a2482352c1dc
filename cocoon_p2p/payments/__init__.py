"""Payments: TON payment channels between a client (party A, pays) and a worker (party B).

The on-chain side is the official async payment-channel contract (DESIGN.md §9), whose code
``ensure_contract_code()`` fetches once from npm and caches. Everything else is here:

Setting up (both peers agree on one ``ChannelParams``; the client sends it to the worker)::

    code = ensure_contract_code()
    params = ChannelParams(random_channel_id(), client_key.public_key, worker_key.public_key,
                           client_wallet.address, worker_wallet.address, deposit_a=2 * 10**9)
    payer = await PayerChannel.create(params, client_key, store)          # client
    payee = await PayeeChannel.create(params, worker_key, store)          # worker
    await payer.set_payee_state(payee.own_state())   # the worker's signed state: lets the client force-close
    await open_channel(backend, client_wallet, client_key, params, code)  # deploy + deposit, one message

Paying per chunk (amounts are cumulative, int nanoTON)::

    state = await payer.pay(total_nanoton)            # persisted, then signed; send state.to_wire()
    await payee.accept(SignedState.from_wire(msg), delivered_value, credit)   # or PaymentRejected(reason)
    if payee.may_deliver(next_total, credit): await payee.reserve(next_total, credit)  # chunk on credit

``delivered_value`` counts the chunk the payment releases; ``credit`` is one chunk's price. A
payee persists before the caller delivers, a payer before it signs, so after a crash both reload
with ``PayerChannel.load`` / ``PayeeChannel.load`` and resume or close.

Closing::

    terms = payer.close_terms()                       # either side may propose
    sig_a, sig_b = await payer.sign_close(terms), await payee.sign_close(terms)
    await close_cooperatively(backend, params, code, terms, sig_a, sig_b)
    await force_close(backend, wallet, channel, code) # the other side vanished
    ChannelWatcher(backend, channel, wallet, code)    # challenges stale states, finishes ripe closes

Chains (``payments.chain``): ``EmulatorChain`` (embedded, real transactions in pytvm),
``RemoteChain`` + ``serve_chain`` (one emulated chain shared by a devnet's processes over loopback),
``PytoniqBackend`` (testnet/mainnet via liteservers; not exercised live here), and ``Wallet``
(WalletV4R2: the one place that signs what goes on chain).
"""

from .chain.base import ChainBackend, OnchainChannel, Receipt
from .chain.wallet import Wallet
from .channel import CLOSED, CLOSING, OPEN, PayeeChannel, PayerChannel
from .contract_code import ensure_contract_code
from .errors import (
    ChainActionFailed,
    ChainError,
    ChannelStateError,
    ContractCodeError,
    NotSupported,
    PaymentError,
    PaymentRejected,
)
from .onchain import (
    ChannelWatcher,
    challenge_quarantined_state,
    close_cooperatively,
    commit_cooperatively,
    finish_uncooperative_close,
    force_close,
    open_channel,
    settle_conditionals,
    start_uncooperative_close,
)
from .params import ChannelParams, CloseTerms, CommitTerms, SignedState, random_channel_id
from .store import ChannelStore, StoreError

__all__ = [
    "CLOSED",
    "CLOSING",
    "OPEN",
    "ChainActionFailed",
    "ChainBackend",
    "ChainError",
    "ChannelParams",
    "ChannelStateError",
    "ChannelStore",
    "ChannelWatcher",
    "CloseTerms",
    "CommitTerms",
    "ContractCodeError",
    "NotSupported",
    "OnchainChannel",
    "PayeeChannel",
    "PayerChannel",
    "PaymentError",
    "PaymentRejected",
    "Receipt",
    "SignedState",
    "StoreError",
    "Wallet",
    "challenge_quarantined_state",
    "close_cooperatively",
    "commit_cooperatively",
    "ensure_contract_code",
    "finish_uncooperative_close",
    "force_close",
    "open_channel",
    "random_channel_id",
    "settle_conditionals",
    "start_uncooperative_close",
]
