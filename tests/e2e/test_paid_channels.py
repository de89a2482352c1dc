"""Jobs paid through TON payment channels on a live in-process network.

The chain is a ``cocoon-p2p chain`` service (the real contract in pytvm's emulator) served on
loopback in the same trio run; every peer reaches it through ``RemoteChain`` as separate processes
would. The client opens one channel to the worker at its first award, reuses it for later jobs
(also after a restart), closes it cooperatively, and the payouts land in both wallets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from cocoon_p2p.client.types import ChatMessage, CompletionRequest, CompletionResult
from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.node.config import ClientConfig, PaymentsConfig, WorkerConfig
from cocoon_p2p.node.peer import Peer
from cocoon_p2p.payments import onchain
from cocoon_p2p.payments.chain import CHANNEL_UNINITED, RemoteChain, run_emulator_service
from cocoon_p2p.payments.channel import CLOSED, PayeeChannel, PayerChannel
from cocoon_p2p.payments.params import SignedState
from cocoon_p2p.payments.session import ChannelPayments
from cocoon_p2p.session.protocol import job_cost
from tests.e2e.network import PeerSpec, peer_network

pytestmark = pytest.mark.slow

# A payout message costs the receiver ~0.001 TON of fees: below that, the contract's payout to B fails
# and A gets it all. Prices here make a job worth ~0.02 TON (a lone bidder is paid the max price).
PRICES = WorkerConfig(price_prompt=100_000_000_000, price_completion=1_000_000_000_000)
BUYER = ClientConfig(max_price_prompt=200_000_000_000, max_price_completion=2_000_000_000_000)
FAST = PaymentsConfig(watch_interval_s=0.1, close_grace_s=0.5, close_on_shutdown=False)
MAX_FORWARD_FEE = 10_000_000
MAX_GAS = 200_000_000  # what opening and closing a channel may cost the client, all fees together


@asynccontextmanager
async def chain_service(root: Path) -> AsyncIterator[tuple[str, RemoteChain]]:
    async with trio.open_nursery() as nursery:
        address = await nursery.start(run_emulator_service, root / "chain", TcpNetwork(), "127.0.0.1:0")
        chain = RemoteChain(TcpNetwork(), address)
        yield address, chain
        await chain.aclose()
        nursery.cancel_scope.cancel()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 60) -> None:
    """Poll ``check`` until it holds; the limit only guards against a hang."""
    with trio.move_on_after(limit):
        while not await check():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"never happened: {what}")


def payments(peer: Peer) -> ChannelPayments:
    assert isinstance(peer.payments, ChannelPayments)
    return peer.payments


async def funded(peer: Peer) -> None:
    pay = payments(peer)

    async def ok() -> bool:
        return pay.balance is not None and pay.balance >= pay.config.faucet_below

    await eventually(ok, "the faucet funded the wallet")


def specs(chain: str) -> list[PeerSpec]:
    return [
        PeerSpec("boot", ["bootstrap"]),
        PeerSpec("worker", ["worker"], worker=PRICES, chain=chain, payments=FAST),
        PeerSpec("client", ["client"], client=BUYER, chain=chain, payments=FAST),
    ]


async def ask(peer: Peer, text: str = "Name a colour.", max_tokens: int = 10) -> CompletionResult:
    assert peer.client is not None
    request = CompletionRequest(
        model="gemma3-270m", messages=(ChatMessage("user", text),), max_tokens=max_tokens, temperature=0.0
    )
    with trio.fail_after(180):
        result = await peer.client.client.complete(request)
    price = result.price
    assert result.cost_nanoton == job_cost(
        price.prompt_per_million, price.completion_per_million, result.prompt_tokens, result.completion_tokens
    )
    assert result.payments is not None and result.payments["job_paid_nanoton"] == result.cost_nanoton
    return result


async def test_jobs_reuse_one_channel_across_a_restart_then_it_closes_with_the_right_payouts(tmp_path: Path) -> None:
    async with chain_service(tmp_path) as (address, chain), peer_network(tmp_path, specs(address)) as net:
        worker, client = net["worker"].peer, net["client"].peer
        await funded(worker)
        await funded(client)
        client_wallet, worker_wallet = payments(client).wallet.address, payments(worker).wallet.address
        client_before, worker_before = await chain.balance(client_wallet), await chain.balance(worker_wallet)

        first = await ask(client)
        second = await ask(client, "Name a fruit.")
        assert first.payments and second.payments
        cid = first.payments["channel"]
        assert second.payments["channel"] == cid  # reused, not reopened
        total = first.cost_nanoton + second.cost_nanoton
        assert second.payments["channel_paid_nanoton"] == total
        payee = payments(worker).entries[int(cid, 16)]

        async def worker_paid() -> bool:
            return isinstance(payee.channel, PayeeChannel) and payee.channel.paid == total and not payee.busy

        await eventually(worker_paid, "the worker accepted both jobs' payments")
        assert worker.worker is not None and worker.worker.session is not None
        assert worker.worker.session.stats.earned == total

        # The client restarts: it reloads the channel from its store and goes on using it.
        net["client"].kill()
        async with trio.open_nursery() as nursery:
            restarted = Peer(client.config, client.identity)
            await nursery.start(restarted.run)
            await restarted.joined.wait()
            third = await ask(restarted, "Name a tree.")
            assert third.payments and third.payments["channel"] == cid
            total += third.cost_nanoton
            assert third.payments["channel_paid_nanoton"] == total
            await eventually(worker_paid, "the worker accepted the third job's payment")

            pay = payments(restarted)
            entry = pay.entries[int(cid, 16)]
            report = await pay.close(entry, fallback_force=False)
            assert report["how"] == "cooperative" and report["balance_b"] == total
            assert await chain.get_channel_state(entry.address) == CHANNEL_UNINITED
            assert report["payout_b"] > 0 and 0 < report["balance_b"] - report["payout_b"] < MAX_FORWARD_FEE
            assert await chain.balance(worker_wallet) - worker_before == report["payout_b"] - report["fees_b"]
            fees = client_before - await chain.balance(client_wallet) - total  # the client paid the jobs and gas
            assert 0 < fees < MAX_GAS

            async def worker_closed() -> bool:
                return payee.channel.status == CLOSED

            await eventually(worker_closed, "the worker saw the channel closed")

            fourth = await ask(restarted, "Name a river.")  # no open channel to this worker: a new one
            assert fourth.payments and fourth.payments["channel"] != cid
            nursery.cancel_scope.cancel()


async def test_a_stale_state_the_client_submits_is_challenged_by_the_worker(tmp_path: Path) -> None:
    async with chain_service(tmp_path) as (address, chain), peer_network(tmp_path, specs(address)) as net:
        worker, client = net["worker"].peer, net["client"].peer
        await funded(worker)
        await funded(client)
        result = await ask(client, "Count to five.", max_tokens=12)
        assert result.payments is not None
        cid = int(result.payments["channel"], 16)
        payer, payee = payments(client).entries[cid], payments(worker).entries[cid]
        assert isinstance(payer.channel, PayerChannel) and isinstance(payee.channel, PayeeChannel)

        async def worker_paid() -> bool:
            return payee.channel.paid == result.cost_nanoton and not payee.busy

        await eventually(worker_paid, "the worker accepted the payment")
        latest = payee.channel.latest
        assert latest is not None and latest.seqno >= 2
        # The client cheats: it puts its first, smaller state into quarantine as if it were its last.
        channel = payer.channel
        assert channel.payee_state is not None
        stale = SignedState.sign(client.identity, cid, 1, 1, channel.counterparty)
        pay = payments(client)
        await onchain.start_uncooperative_close(
            chain, pay.wallet, client.identity, True, channel.params, pay.code, stale.to_cell(),
            channel.payee_state.to_cell(),
        )  # fmt: skip

        async def challenged() -> bool:
            return payments(worker).counts["challenged"] == 1

        await eventually(challenged, "the worker's watcher challenged the stale state")
        quarantine = (await chain.get_channel_data(payee.address)).quarantine
        assert quarantine is not None and quarantine.challenged and quarantine.state_a.seqno == latest.seqno
        fine = channel.params.closing.misbehavior_fine
        assert quarantine.state_a.sent == latest.sent + fine  # the cheater is fined

        worker_wallet = payments(worker).wallet.address
        worker_before = await chain.balance(worker_wallet)  # after paying the challenge's gas
        closing = channel.params.closing
        await chain.advance_time(closing.quarantine_duration + closing.conditional_close_duration + 1)

        async def finished() -> bool:
            return payee.channel.status == CLOSED and payer.channel.status == CLOSED

        await eventually(finished, "a watcher finished the close and both sides marked it closed")
        assert await chain.get_channel_state(payee.address) == CHANNEL_UNINITED
        gained = await chain.balance(worker_wallet) - worker_before
        assert 0 < latest.sent + fine - gained < MAX_FORWARD_FEE  # the latest state and the fine, less forwarding
