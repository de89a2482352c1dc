"""Hypothesis state machine: both channel ends and their stores under pay/commit/close/crash/restart.

Crashes drop the in-memory channel objects and the store connections; restarts reload from the
files. The channel is real (opened, committed and closed on the emulated contract), so the money
properties are checked where the money is.

Properties, after every step and at every close:
- no seqno is ever signed with two different states (all signatures ever produced are recorded);
- the worker is never owed more than one chunk (work released minus what its accepted state pays);
- the client never pays for a chunk it has not received;
- a close pays B exactly its claim (less the forwarding fee), and the channel's whole balance goes
  out as payouts and fees: payouts sum to the deposits minus fees.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cocoon_p2p.payments import onchain
from cocoon_p2p.payments.chain.base import CHANNEL_UNINITED, Receipt
from cocoon_p2p.payments.channel import OPEN, PayeeChannel, PayerChannel
from cocoon_p2p.payments.errors import ChannelStateError, PaymentRejected
from cocoon_p2p.payments.params import SignedState
from cocoon_p2p.payments.store import ChannelStore

from .helpers import CHUNK, Parties, open_parties

CREDIT = CHUNK
STEPS_BEFORE_CLOSE = 15  # closing is terminal: let the interesting part run first
RAM_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else None
MAX_FORWARD_FEE = 10_000_000


def run(fn, *args):  # each rule is one short trio run
    return trio.run(fn, *args)


class ChannelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A crash here is a process dying (objects and connections dropped), not a power cut, so the
        # files may live in RAM: the same code paths without milliseconds of fsync per step.
        self.dir = Path(tempfile.mkdtemp(prefix="cocoon-pay-", dir=RAM_DIR))
        self.p: Parties = run(open_parties, self.dir)
        self.payer: PayerChannel | None = self.p.payer
        self.payee: PayeeChannel | None = self.p.payee
        self.received = 0  # value of the chunks the client actually received
        self.signed: dict[int, SignedState] = {}
        self.closed = False
        self.committed_a = 0
        self.steps = 0

    def teardown(self) -> None:
        for store in (self.p.store_a, self.p.store_b):
            store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- bookkeeping ----

    def _record(self, state: SignedState | None) -> None:
        if state is None:
            return
        seen = self.signed.setdefault(state.seqno, state)
        assert seen == state, f"seqno {state.seqno} signed twice with different states"

    def _claim(self) -> int:
        """What the worker can prove it is owed: its persisted accepted state (reloaded if it is down)."""
        if self.payee is not None:
            return self.payee.paid
        store = ChannelStore(self.p.store_b.path, threaded=False)
        try:
            return PayeeChannel.load(store, self.p.params.channel_id, self.p.key_b).paid
        finally:
            store.close()

    # ---- rules ----

    @precondition(lambda self: self.payee is not None and not self.closed)
    @rule()
    def deliver(self) -> None:
        payee = self.payee
        assert payee is not None
        if run(payee.reserve, payee.delivered + CHUNK, CREDIT):
            self.received += CHUNK  # a new chunk goes out, only once the worker has it on record

    @precondition(lambda self: self.payee is not None and not self.closed)
    @rule()
    def reserve_then_crash(self) -> None:
        payee = self.payee
        assert payee is not None
        run(payee.reserve, payee.delivered + CHUNK, CREDIT)  # recorded, never delivered
        self.crash_payee()

    @precondition(lambda self: self.payer is not None and not self.closed)
    @rule(lost=st.booleans(), release_next=st.booleans())
    def pay(self, lost: bool, release_next: bool) -> None:
        """The client pays for all it received; the worker may release the next chunk on the same write."""
        payer = self.payer
        assert payer is not None
        if self.received <= payer.sent:
            return
        state = run(payer.pay, self.received)
        self._record(state)
        payee = self.payee
        if payee is None or lost:
            return
        wire = SignedState.from_bytes(state.to_bytes())
        if release_next:
            try:
                run(payee.accept, wire, payee.delivered + CHUNK, CREDIT)
            except PaymentRejected as exc:  # a chunk recorded before a crash was never received
                assert exc.reason == "underpaid" and payee.delivered > self.received
            else:
                self.received += CHUNK
                return
        run(payee.accept, wire, payee.delivered, CREDIT)

    @precondition(lambda self: self.payer is not None and self.payee is not None and not self.closed)
    @rule(lost=st.booleans(), release_next=st.booleans())
    def deliver_and_pay(self, lost: bool, release_next: bool) -> None:
        """The common round trip, so that examples get far enough for crashes to matter."""
        self.deliver()
        self.pay(lost, release_next)

    @precondition(lambda self: self.payer is not None and self.payee is not None and not self.closed)
    @rule()
    def resend_latest(self) -> None:
        assert self.payer is not None and self.payee is not None
        latest = self.payer.latest()
        self._record(latest)
        if latest is None:
            return
        try:
            run(self.payee.accept, latest, self.payee.delivered, CREDIT)
        except PaymentRejected as exc:
            assert exc.reason == "stale_seqno" and self.payee.paid >= latest.sent

    @precondition(lambda self: self.payer is not None)
    @rule()
    def crash_payer(self) -> None:
        self.payer = None
        self.p.store_a.close()

    @precondition(lambda self: self.payee is not None)
    @rule()
    def crash_payee(self) -> None:
        self.payee = None
        self.p.store_b.close()

    @precondition(lambda self: self.payer is None)
    @rule()
    def restart_payer(self) -> None:
        self.p.store_a = ChannelStore(self.dir / "client.db", threaded=False)
        self.payer = PayerChannel.load(self.p.store_a, self.p.params.channel_id, self.p.key_a)
        self._record(self.payer.latest())

    @precondition(lambda self: self.payee is None)
    @rule()
    def restart_payee(self) -> None:
        self.p.store_b = ChannelStore(self.dir / "worker.db", threaded=False)
        self.payee = PayeeChannel.load(self.p.store_b, self.p.params.channel_id, self.p.key_b)

    @precondition(lambda self: self.payer is not None and self.payee is not None and not self.closed)
    @rule()
    def commit(self) -> None:
        payer, payee = self.payer, self.payee
        assert payer is not None and payee is not None
        # only when both hold the same latest state and it is past the last commit
        if payee.latest is None or payee.latest.seqno != payer.seqno or payer.seqno <= self.committed_a:
            return
        terms = payee.commit_terms()
        sig_b, payee_state = run(payee.sign_commit, terms)
        sig_a = run(payer.sign_commit, terms, payee_state)
        run(onchain.commit_cooperatively, self.p.chain, self.p.params, self.p.code, terms, sig_a, sig_b)
        self.committed_a = terms.seqno_a

    @precondition(lambda self: not self.closed and self.steps >= STEPS_BEFORE_CLOSE)
    @rule(how=st.sampled_from(["cooperative", "worker", "client"]))
    def close(self, how: str) -> None:
        """Terminal: the channel closes on chain one of three ways (if the parties needed are up)."""
        if how == "cooperative" and self.payer is not None and self.payee is not None:
            self._close_cooperatively(self.payer, self.payee)
        elif how == "worker" and self.payee is not None and self.payee.latest is not None:
            run(onchain.force_close, self.p.chain, self.p.wallet_b, self.payee, self.p.code)
            self._finish(self.payee.paid)
        elif how == "client" and self.payer is not None:
            self._client_force_closes(self.payer)

    def _close_cooperatively(self, payer: PayerChannel, payee: PayeeChannel) -> None:
        terms = payee.close_terms()  # the worker proposes what it can prove
        assert terms.balance_a + terms.balance_b == self.p.params.deposit_a
        sig_b = run(payee.sign_close, terms)
        sig_a = run(payer.sign_close, terms)
        held = run(self.p.chain.balance, self.p.address)
        receipt = run(onchain.close_cooperatively, self.p.chain, self.p.params, self.p.code, terms, sig_a, sig_b)
        self._check_payout(receipt, held, terms.balance_b)
        try:
            run(payer.pay, payer.sent + 1)
            raise AssertionError("paid on a closed channel")
        except ChannelStateError:
            pass

    def _client_force_closes(self, payer: PayerChannel) -> None:
        run(onchain.force_close, self.p.chain, self.p.wallet_a, payer, self.p.code)
        self._record(payer.latest())
        if self.payee is not None:  # an honest client's latest state is never stale for the worker
            watcher = onchain.ChannelWatcher(self.p.chain, self.payee, self.p.wallet_b, self.p.code)
            assert run(watcher.check) is None
        self._finish(payer.sent)

    def _finish(self, expected_b: int) -> None:
        run(self.p.wait_out_quarantine)
        held = run(self.p.chain.balance, self.p.address)
        receipt = run(onchain.finish_uncooperative_close, self.p.chain, self.p.params, self.p.code)
        self._check_payout(receipt, held, expected_b)

    def _check_payout(self, receipt: Receipt, held: int, balance_b: int) -> None:
        self.closed = True
        assert balance_b >= self._claim()  # the worker got at least what it can prove
        assert run(self.p.chain.get_channel_state, self.p.address) == CHANNEL_UNINITED
        tx = receipt.tx_at(self.p.address)
        assert tx is not None and tx.success
        assert held + tx.value_in == sum(v + fwd for _, v, fwd in tx.outgoing) + tx.fees
        to_b = [v for dest, v, _ in tx.outgoing if dest == self.p.wallet_b.address]
        if balance_b:
            assert len(to_b) == 1 and 0 < balance_b - to_b[0] < MAX_FORWARD_FEE
        assert run(self.p.chain.balance, self.p.address) == 0

    # ---- invariants ----

    @invariant()
    def count_steps(self) -> None:  # invariants run after every step: a cheap step counter
        self.steps += 1

    @invariant()
    def worker_owed_at_most_one_chunk(self) -> None:
        if not self.closed:
            assert self.received - self._claim() <= CREDIT

    @invariant()
    def client_pays_only_for_received_chunks(self) -> None:
        if self.payer is not None:
            assert self.payer.sent <= self.received
            if self.payer.status == OPEN:
                self._record(self.payer.latest())


ChannelMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestChannelMachine = ChannelMachine.TestCase
