"""Chain backends: the emulator's persistence and faucet, the loopback service, the pytoniq backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from pytoniq_core import Cell, Slice
from pytoniq_core.tlb import ShardAccount

from cocoon_p2p.errors import ConfigError
from cocoon_p2p.identity import Identity
from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.payments import onchain
from cocoon_p2p.payments.chain.base import CHANNEL_UNINITED
from cocoon_p2p.payments.chain.emulator import EmulatorChain
from cocoon_p2p.payments.chain.pytoniq_backend import PytoniqBackend, wallet_key_from_file
from cocoon_p2p.payments.chain.service import RemoteChain, serve_chain
from cocoon_p2p.payments.chain.wallet import Wallet
from cocoon_p2p.payments.errors import ChainError, NotSupported

from .helpers import CHUNK, T0, TON, open_parties


async def test_emulator_state_survives_a_restart_and_is_locked(tmp_path: Path) -> None:
    chain = EmulatorChain(tmp_path, clock=lambda: T0)
    wallet = Wallet(chain, Identity(b"\x07" * 32))
    other = Wallet(chain, Identity(b"\x08" * 32))
    await chain.faucet(wallet.address, 7 * TON)  # above 2**32 nanoTON: amounts are not truncated
    await wallet.transfer(other.address, 5 * TON, bounce=False)
    await chain.advance_time(600)
    balance, seqno = await wallet.balance(), await wallet.seqno()
    assert (seqno, await other.balance()) == (1, 5 * TON)
    with pytest.raises(ChainError):
        EmulatorChain(tmp_path, clock=lambda: T0)  # one process owns a data dir
    await chain.aclose()

    again = EmulatorChain(tmp_path, clock=lambda: T0)
    assert await again.now() == T0 + 600
    assert (await again.balance(wallet.address), await Wallet(again, wallet.key).seqno()) == (balance, seqno)
    before = await again.balance(other.address)
    receipt = await Wallet(again, wallet.key).transfer(other.address, TON, bounce=False)
    credited = receipt.tx_at(other.address)
    assert credited is not None and credited.value_in == TON
    assert await again.balance(other.address) == before + TON - credited.fees  # fees: storage since the restart
    again.close()


async def test_chain_time_never_goes_back() -> None:
    clock = [T0 + 100.0]
    chain = EmulatorChain(clock=lambda: clock[0])
    assert await chain.now() == T0 + 100
    clock[0] = T0  # the wall clock stepped back
    assert await chain.now() == T0 + 100
    assert await chain.advance_time(50) >= T0 + 100
    with pytest.raises(ValueError):
        await chain.advance_time(-1)


async def test_channel_through_the_loopback_service(tmp_path: Path) -> None:
    backing = EmulatorChain(tmp_path / "chain", clock=lambda: T0)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_chain, backing, TcpNetwork(), "127.0.0.1:0")
        remote = RemoteChain(TcpNetwork(), address)
        p = await open_parties(tmp_path, chain=remote)
        await p.pay_chunks(30)
        terms = p.payer.close_terms()
        sig_a, sig_b = await p.payer.sign_close(terms), await p.payee.sign_close(terms)
        receipt = await onchain.close_cooperatively(remote, p.params, p.code, terms, sig_a, sig_b)
        assert receipt.observed and receipt.tx_at(p.address) is not None
        assert await backing.get_channel_state(p.address) == CHANNEL_UNINITED
        assert await remote.balance(p.wallet_b.address) == backing.get_account_sync(p.wallet_b.address).balance
        with pytest.raises(ChainError):  # errors come back as errors
            await remote.run_get_method("0:" + "ab" * 32, "get_channel_data")
        await remote.aclose()
        nursery.cancel_scope.cancel()
    backing.close()


async def test_service_stays_on_loopback() -> None:
    with pytest.raises(ConfigError):
        await serve_chain(EmulatorChain(clock=lambda: T0), TcpNetwork(), "0.0.0.0:0")


class EmulatedLiteClient:
    """Stands in for pytoniq's LiteBalancer (asyncio API) over an emulated chain: the liteserver side
    of the wire is not available offline, the contract and wallets behind it are real."""

    def __init__(self, chain: EmulatorChain) -> None:
        self.chain = chain
        self.sent: list[bytes] = []

    async def start_up(self) -> None:
        await asyncio_checkpoint()

    async def close_all(self) -> None:
        await asyncio_checkpoint()

    async def get_time(self) -> dict[str, Any]:
        return {"@type": "liteServer.currentTime", "now": self.chain.now_sync()}

    async def raw_get_account_state(self, address: Any) -> tuple[Any, ShardAccount | None]:
        boc = self.chain.shard_account_boc(address)
        shard = None if boc is None else ShardAccount.deserialize(Slice.one_from_boc(boc))
        return (None if shard is None else shard.account), shard

    async def raw_send_message(self, message: bytes) -> int:
        self.sent.append(message)
        self.chain.send_message_sync(Cell.one_from_boc(message))
        return 1

    async def run_get_method(self, address: Any, method: str, stack: list[Any]) -> list[Any]:
        return self.chain.run_get_method_sync(address, method, stack)


async def asyncio_checkpoint() -> None:
    import asyncio

    await asyncio.sleep(0)


async def test_pytoniq_backend_runs_a_channel_against_an_emulated_liteserver() -> None:
    chain = EmulatorChain(clock=lambda: T0)
    client = EmulatedLiteClient(chain)
    backend = PytoniqBackend(lambda: client)
    with pytest.raises(ChainError):
        await backend.now()  # not started
    await backend.start()
    try:
        assert await backend.now() == T0
        p = await open_parties(chain=backend, devnet=chain)  # the emulator only funds wallets and moves time
        await p.pay_chunks(10)
        await onchain.force_close(backend, p.wallet_b, p.payee, p.code)
        await p.wait_out_quarantine()
        before = await backend.balance(p.wallet_b.address)
        receipt = await onchain.finish_uncooperative_close(backend, p.params, p.code)
        assert not receipt.observed  # a real network does not say what happened: the getters did
        assert await backend.get_channel_state(p.address) == CHANNEL_UNINITED
        assert 0 < 10 * CHUNK - (await backend.balance(p.wallet_b.address) - before) < 10_000_000
        assert len(client.sent) >= 3  # open, force close, finish all went through the liteclient
        with pytest.raises(NotSupported):
            await backend.faucet(p.wallet_a.address, TON)
    finally:
        await backend.aclose()


def test_wallet_key_files(tmp_path: Path) -> None:
    from pytoniq_core.crypto.keys import mnemonic_new, mnemonic_to_private_key

    words = mnemonic_new(24)
    (tmp_path / "mnemonic").write_text(" ".join(words) + "\n")
    public, _ = mnemonic_to_private_key(words)
    assert wallet_key_from_file(tmp_path / "mnemonic").public_key == public
    (tmp_path / "seed").write_text("11" * 32)
    assert wallet_key_from_file(tmp_path / "seed").seed == b"\x11" * 32
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(ChainError):
        wallet_key_from_file(tmp_path / "junk")
