"""The per-job payment adapters on bare channels: bases, acceptance, persisting, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from cocoon_p2p.errors import RemoteError
from cocoon_p2p.identity import Identity, PeerId
from cocoon_p2p.payments.channel import PayeeChannel, PayerChannel
from cocoon_p2p.payments.errors import PaymentRejected
from cocoon_p2p.payments.jobs import ChannelSessionPayee, ChannelSessionPayer, CpuMeter
from cocoon_p2p.payments.params import ChannelParams, SignedState, random_channel_id
from cocoon_p2p.payments.policy import ChannelEntry, check_proposal, deposit_for
from cocoon_p2p.payments.session import load_or_create_wallet_key
from cocoon_p2p.payments.store import ChannelStore

WALLET_A, WALLET_B = "0:" + "aa" * 32, "0:" + "bb" * 32
CREDIT = 1_000


class CountingStore(ChannelStore):
    writes = 0

    def _write(self, rows: list) -> None:  # type: ignore[override]
        self.writes += 1
        super()._write(rows)


class Book:
    """What a payee adapter asks ChannelPayments for: the entry a job names."""

    def __init__(self, entry: ChannelEntry) -> None:
        self.entry = entry

    async def payee_entry(self, channel_id: int, client: PeerId) -> ChannelEntry:
        await trio.lowlevel.checkpoint()
        if channel_id != self.entry.channel_id or client != self.entry.peer:
            raise RemoteError("payment_rejected", "unknown channel")
        return self.entry


async def pair(tmp_path: Path) -> tuple[ChannelEntry, ChannelEntry, CountingStore, Identity]:
    key_a, key_b = Identity.generate(), Identity.generate()
    params = ChannelParams(random_channel_id(), key_a.public_key, key_b.public_key, WALLET_A, WALLET_B, 10**9)
    store_b = CountingStore(tmp_path / "worker.db")
    payer = await PayerChannel.create(params, key_a, ChannelStore(":memory:"))
    payee = await PayeeChannel.create(params, key_b, store_b)
    await payer.set_payee_state(payee.own_state())
    client = ChannelEntry(payer, PeerId.from_public_key(key_b.public_key))
    worker = ChannelEntry(payee, PeerId.from_public_key(key_a.public_key), confirmed=True)
    return client, worker, store_b, key_a


async def stream(payer: ChannelSessionPayer, payee: ChannelSessionPayee, chunks: int, value: int = 100) -> None:
    owed = 0
    for _ in range(chunks):
        await payee.release(owed + value, CREDIT)
        owed += value
        await payee.accept(await payer.pay(owed), owed, CREDIT)
    await payee.release(owed, CREDIT)


async def test_every_payment_persisted_with_no_slack_and_fewer_writes_with_slack(tmp_path: Path) -> None:
    client, worker, store, key_a = await pair(tmp_path)
    client_id = PeerId.from_public_key(key_a.public_key)
    for slack, expected_writes in ((0.0, 21), (0.5, 5)):
        payer = ChannelSessionPayer(client, "")
        payee = ChannelSessionPayee(Book(worker), client_id, slack=slack)
        await payee.begin(await payer.begin())
        store.writes = 0
        await stream(payer, payee, 20)
        assert payee.paid == 2_000 and worker.channel.paid == payer.channel.sent  # the final one is always kept
        assert store.writes == expected_writes  # strict: one per chunk and the last payment; slack: ~credit/2
        payee.end()
        await payer.finish()
    assert not worker.busy and not client.busy and worker.channel.paid == 4_000


async def test_a_forged_or_stale_payment_never_releases_a_chunk(tmp_path: Path) -> None:
    client, worker, _, key_a = await pair(tmp_path)
    payer = ChannelSessionPayer(client, "")
    payee = ChannelSessionPayee(Book(worker), PeerId.from_public_key(key_a.public_key))
    await payee.begin(await payer.begin())
    await payee.release(100, CREDIT)
    good = await payer.pay(100)
    await payee.accept(good, 100, CREDIT)
    with pytest.raises(PaymentRejected):
        await payee.accept(good, 100, CREDIT)  # replayed
    forged = SignedState.sign(Identity.generate(), worker.channel_id, 9, 10**6, None).to_wire()
    await payee.accept(forged, 100, CREDIT)  # counted when it arrives...
    assert payee.paid == 10**6
    with pytest.raises(PaymentRejected) as caught:
        await payee.release(200, CREDIT)  # ...but checked before anything goes out on it
    assert caught.value.reason == "bad_signature" and worker.channel.paid == 0
    with pytest.raises(PaymentRejected):
        await payee.accept({"cid": b"x"}, 100, CREDIT)


async def test_job_terms_are_checked_and_a_channel_carries_one_job_at_a_time(tmp_path: Path) -> None:
    client, worker, _, key_a = await pair(tmp_path)
    client_id = PeerId.from_public_key(key_a.public_key)
    for terms in (None, {"mode": "ledger"}, {"mode": "channel", "cid": b"short", "base": 0}):
        with pytest.raises(RemoteError):
            await ChannelSessionPayee(Book(worker), client_id).begin(terms)
    payer = ChannelSessionPayer(client, "")
    terms = await payer.begin()
    first = ChannelSessionPayee(Book(worker), client_id)
    await first.begin(terms)
    with trio.move_on_after(0.05):  # a second job waits for the first to end...
        await ChannelSessionPayee(Book(worker), client_id).begin(terms)
        raise AssertionError("a busy channel took a second job")
    await stream(payer, first, 3)
    first.end()
    second = ChannelSessionPayee(Book(worker), client_id)
    await second.begin(await payer.begin())  # ...and gets it once it has
    second.end()
    with pytest.raises(RemoteError):  # a base below what the worker already accepted
        await ChannelSessionPayee(Book(worker), client_id).begin(terms)
    with pytest.raises(RemoteError):  # a channel this client does not have
        await ChannelSessionPayee(Book(worker), PeerId(b"\x01" * 32)).begin(await payer.begin())


async def test_cpu_meter_counts_only_metered_steps() -> None:
    meter = CpuMeter()
    trio.lowlevel.add_instrument(meter)  # type: ignore[arg-type]
    try:
        task = meter.enter()
        sum(range(200_000))
        await trio.sleep(0)
        sum(range(200_000))
        meter.leave(task)
        counted = meter.seconds
        sum(range(200_000))
        await trio.sleep(0)
    finally:
        trio.lowlevel.remove_instrument(meter)  # type: ignore[arg-type]
    assert counted > 0 and meter.seconds == counted


def test_deposits_proposals_and_the_wallet_key(tmp_path: Path) -> None:
    assert deposit_for(10**6, 20, 10**8, 10**7) == 10**8 + 10**7
    assert deposit_for(10**8, 20, 10**8, 10**7) == 2 * 10**9 + 10**7
    key_a, key_b = Identity.generate(), Identity.generate()
    params = ChannelParams(random_channel_id(), key_a.public_key, key_b.public_key, WALLET_A, WALLET_B, 10**9)
    client = PeerId.from_public_key(key_a.public_key)
    check_proposal(params, client=client, own_key=key_b.public_key, own_wallet=WALLET_B, min_quarantine=600)
    refusals = [
        dict(client=client, own_key=key_a.public_key, own_wallet=WALLET_B, min_quarantine=600),
        dict(client=client, own_key=key_b.public_key, own_wallet=WALLET_A, min_quarantine=600),
        dict(client=PeerId.from_public_key(key_b.public_key), own_key=key_b.public_key, own_wallet=WALLET_B,
             min_quarantine=600),
        dict(client=client, own_key=key_b.public_key, own_wallet=WALLET_B, min_quarantine=7200),
    ]  # fmt: skip
    codes = []
    for kwargs in refusals:
        with pytest.raises(RemoteError) as caught:
            check_proposal(params, **kwargs)  # type: ignore[arg-type]
        codes.append(caught.value.code)
    assert codes == ["wrong_key", "wrong_wallet", "not_client", "quarantine_too_short"]
    key = load_or_create_wallet_key(tmp_path)
    assert load_or_create_wallet_key(tmp_path).seed == key.seed  # kept in the data dir, mode 0600
    assert (tmp_path / "wallet" / "identity.key").stat().st_mode & 0o077 == 0
