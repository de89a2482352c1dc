"""ChannelPayments between two real hosts over a loopback chain service (the real contract, no model).

Open at the first job, reuse, cooperative close with the payouts, a second channel for a concurrent
job, force-close when the worker is gone, reload after a restart, and what pay.open refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoon_p2p.errors import ConfigError, RemoteError
from cocoon_p2p.payments.chain import CHANNEL_CLOSURE_STARTED, CHANNEL_UNINITED
from cocoon_p2p.payments.channel import CLOSED, OPEN, PayeeChannel

from .session_helpers import eventually, pay, run_job, world

MAX_FORWARD_FEE = 10_000_000
V = 2_000_000  # a chunk's value: payouts must clear the ~1e6 nanoTON fee of a payout message


async def test_open_reuse_and_close_cooperatively(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        client, worker = await w.start("client", ["client"]), await w.start("worker", ["worker"])
        worker_before = await w.chain.balance(pay(worker).wallet_address)
        payer, payee = await run_job(client, worker, [V] * 5)
        assert payee.paid == payer.channel.sent == 5 * V
        entry = payer.entry
        assert entry.confirmed and not entry.busy and pay(client).counts["opened"] == 1

        payer2, payee2 = await run_job(client, worker, [V] * 3)  # the same channel, from its base
        assert payer2.entry is entry and payer2.base == 5 * V and payee2.paid == 3 * V
        worker_entry = pay(worker).entries[entry.channel_id]
        assert isinstance(worker_entry.channel, PayeeChannel) and worker_entry.channel.paid == 8 * V

        report = await pay(client).close(entry)
        assert report["how"] == "cooperative" and report["balance_b"] == 8 * V
        assert 0 < report["balance_b"] - report["payout_b"] < MAX_FORWARD_FEE
        assert await w.chain.get_channel_state(entry.address) == CHANNEL_UNINITED
        gained = await w.chain.balance(pay(worker).wallet_address) - worker_before
        assert gained == report["payout_b"] - report["fees_b"]

        async def worker_saw_it() -> bool:
            return worker_entry.channel.status == CLOSED

        await eventually(worker_saw_it, "the worker marked the channel closed")
        listing = await pay(client).admin_commands()["channels"]({})
        assert listing["channels"][0]["status"] == CLOSED and listing["channels_open"] == 0


async def test_a_concurrent_job_gets_its_own_channel_and_deposits_follow_the_budget(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        client, worker = await w.start("client", ["client"]), await w.start("worker", ["worker"])
        wallet = pay(worker).wallet_address
        first = await pay(client).payer_for(worker.identity.peer_id, wallet, 10**7)
        second = await pay(client).payer_for(worker.identity.peer_id, wallet, 10**7)  # the first is busy
        assert first.entry is not second.entry
        cfg = pay(client).config
        assert first.channel.params.deposit_a == cfg.deposit_multiple * 10**7 + cfg.misbehavior_fine
        await first.finish()
        third = await pay(client).payer_for(worker.identity.peer_id, wallet, 10**7)
        assert third.entry is first.entry  # free again: reused
        big = await pay(client).payer_for(worker.identity.peer_id, wallet, 3 * 10**8)  # more than either holds
        assert big.entry not in (first.entry, second.entry)
        for payer in (second, third, big):
            await payer.finish()


async def test_worker_gone_client_force_closes_and_the_watchers_finish(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        client, worker = await w.start("client", ["client"]), await w.start("worker", ["worker"])
        payer, _ = await run_job(client, worker, [V] * 4)
        entry = payer.entry
        w.stop(worker)
        report = await pay(client).close(entry)  # nobody answers: force-close with the latest states
        assert report["how"] == "force" and report["claimed_nanoton"] == 4 * V
        assert await w.chain.get_channel_state(entry.address) == CHANNEL_CLOSURE_STARTED
        closing = entry.channel.params.closing
        await w.chain.advance_time(closing.quarantine_duration + closing.conditional_close_duration + 1)

        async def closed() -> bool:
            return entry.channel.status == CLOSED

        await eventually(closed, "the client's watcher finished the close")
        assert await w.chain.get_channel_state(entry.address) == CHANNEL_UNINITED


async def test_both_sides_reload_their_channels_after_a_restart(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        client, worker = await w.start("client", ["client"]), await w.start("worker", ["worker"])
        payer, _ = await run_job(client, worker, [V] * 3, pay_upto=2)  # the client paid 2 chunks of 3...
        cid = payer.entry.channel_id
        worker_channel = pay(worker).entries[cid].channel
        assert isinstance(worker_channel, PayeeChannel)
        assert worker_channel.paid == 2 * V and worker_channel.delivered == 3 * V  # ...the third was on credit
        w.stop(client)
        w.stop(worker)
        client = await w.start("client", ["client"], identity=client.identity)
        worker = await w.start("worker", ["worker"], identity=worker.identity)
        assert pay(client).entries[cid].channel.status == OPEN
        payer2, payee2 = await run_job(client, worker, [V] * 2)  # reused; the unpaid chunk is not charged again
        assert payer2.entry.channel_id == cid and payer2.base == 2 * V
        assert payee2.forgiven == V and payee2.paid == 2 * V
        assert pay(worker).entries[cid].channel.paid == 4 * V


async def test_pay_open_refuses_a_channel_the_worker_could_not_use(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        client, worker = await w.start("client", ["client"]), await w.start("worker", ["worker"])
        other = await w.start("other", ["client"])
        with pytest.raises(RemoteError) as wrong_wallet:
            await pay(client).payer_for(worker.identity.peer_id, pay(other).wallet_address, 10**6)
        assert wrong_wallet.value.code == "wrong_wallet"
        with pytest.raises(RemoteError) as not_worker:
            await pay(client).payer_for(other.identity.peer_id, pay(other).wallet_address, 10**6)
        assert not_worker.value.code == "not_worker"
        pay(client).config.quarantine_s = 60  # too short for the worker to be sure to challenge in time
        with pytest.raises(RemoteError) as short:
            await pay(client).payer_for(worker.identity.peer_id, pay(worker).wallet_address, 10**6)
        assert short.value.code == "quarantine_too_short"
        pay(client).config.quarantine_s = 3600
        payer = await pay(client).payer_for(worker.identity.peer_id, "", 10**6)  # no offer at hand: pay.info
        assert payer.channel.params.address_b == pay(worker).wallet_address
        await payer.finish()


async def test_admin_commands_list_close_and_force_close_by_id_prefix(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        client, worker = await w.start("client", ["client"]), await w.start("worker", ["worker"])
        payer, _ = await run_job(client, worker, [V] * 2)
        commands = pay(worker).admin_commands()
        listing = await commands["channels"]({})
        assert listing["earned_unclaimed_nanoton"] == 2 * V and listing["wallet"] == pay(worker).wallet_address
        cid = f"{payer.entry.channel_id:032x}"
        with pytest.raises(ConfigError):
            await commands["channels/close"]({"id": "zz"})
        report = await commands["channels/force_close"]({"id": cid[:8]})  # the worker claims what it was paid
        assert report["how"] == "force" and report["claimed_nanoton"] == 2 * V
        quarantine = (await w.chain.get_channel_data(payer.entry.address)).quarantine
        assert quarantine is not None and quarantine.state_a.sent == 2 * V

        async def client_noticed() -> bool:
            return payer.entry.channel.status == "closing"

        await eventually(client_noticed, "the client's watcher saw the channel closing")
        status = await pay(client).status()
        assert status["channels_open"] == 1 and status["locked_nanoton"] == payer.entry.remaining()
