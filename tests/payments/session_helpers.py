"""A client and a worker with ``ChannelPayments`` on real hosts and a loopback chain service, no model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from cocoon_p2p.identity import Identity, PeerId
from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.node.config import NodeConfig, PaymentsConfig
from cocoon_p2p.payments.chain import RemoteChain, run_emulator_service
from cocoon_p2p.payments.session import ChannelPayments
from cocoon_p2p.rpc import Host

FAST = PaymentsConfig(watch_interval_s=0.05, close_grace_s=0.2, idle_close_s=3600, close_on_shutdown=False)


class Directory:
    """The one DHT call ChannelPayments makes: find_peer (the client re-dials a worker after a restart)."""

    def __init__(self) -> None:
        self.addresses: dict[PeerId, str] = {}

    async def find_peer(self, peer_id: PeerId) -> list[str]:
        await trio.lowlevel.checkpoint()
        address = self.addresses.get(peer_id)
        return [address] if address else []


@dataclass
class FakePeer:
    config: NodeConfig
    identity: Identity
    host: Host
    dht: Directory
    payments: ChannelPayments | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass
class World:
    chain: RemoteChain
    address: str
    root: Path
    nursery: trio.Nursery
    dht: Directory = field(default_factory=Directory)

    async def start(self, name: str, roles: list[str], *, identity: Identity | None = None,
                    payments: PaymentsConfig = FAST) -> FakePeer:  # fmt: skip
        """A peer with its own host and payments, run until ``stop``; the same name reuses the data dir."""
        identity = identity or Identity.generate()
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        config = NodeConfig(data_dir=data_dir, roles=roles, chain=self.address, payments=replace(payments))
        host = Host(identity, TcpNetwork())
        peer = FakePeer(config, identity, host, self.dht)
        await self.nursery.start(self._run, peer)
        return peer

    async def _run(self, peer: FakePeer, *, task_status: trio.TaskStatus[None]) -> None:
        with peer.scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(peer.host.run)
                self.dht.addresses[peer.identity.peer_id] = peer.host.listen_address
                peer.payments = ChannelPayments(peer)
                await nursery.start(peer.payments.run)
                await eventually(lambda: funded(peer), "the faucet funded the wallet")
                task_status.started()

    def stop(self, peer: FakePeer) -> None:
        self.dht.addresses.pop(peer.identity.peer_id, None)
        peer.scope.cancel()


async def funded(peer: FakePeer) -> bool:
    pay = peer.payments
    return pay is not None and pay.balance is not None and pay.balance >= pay.config.faucet_below


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30) -> None:
    """Poll until ``check`` holds; the limit only guards against a hang."""
    with trio.move_on_after(limit):
        while not await check():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"never happened: {what}")


@asynccontextmanager
async def world(root: Path) -> AsyncIterator[World]:
    async with trio.open_nursery() as nursery:
        address = await nursery.start(run_emulator_service, root / "chain", TcpNetwork(), "127.0.0.1:0")
        chain = RemoteChain(TcpNetwork(), address)
        yield World(chain, address, root, nursery)
        await chain.aclose()
        nursery.cancel_scope.cancel()


def pay(peer: FakePeer) -> ChannelPayments:
    assert peer.payments is not None
    return peer.payments


async def run_job(client: FakePeer, worker: FakePeer, chunks: list[int], *, budget: int = 10**6,
                  credit: int = 1000, pay_upto: int | None = None) -> tuple[Any, Any]:  # fmt: skip
    """One job as the session layer drives it: chunk values in, a payment after each chunk.

    ``pay_upto`` stops the client paying after that many chunks (it vanished or cheats).
    """
    payer = await pay(client).payer_for(worker.identity.peer_id, pay(worker).wallet_address, budget)
    payee = await pay(worker).payee_for(client.identity.peer_id)
    await payee.begin(await payer.begin())
    owed = 0
    try:
        for i, value in enumerate(chunks):
            await payee.release(owed + value, credit)
            owed += value
            if pay_upto is None or i < pay_upto:
                await payee.accept(await payer.pay(owed), owed, credit)
        if pay_upto is None:
            await payee.release(owed, credit)  # the final payment
    finally:
        payee.end()
        await payer.finish()
    return payer, payee
