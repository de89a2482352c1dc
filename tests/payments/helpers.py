"""A client and a worker with funded wallets and an open channel on the embedded chain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytoniq_core import Cell

from cocoon_p2p.identity import Identity
from cocoon_p2p.payments import onchain
from cocoon_p2p.payments.cells import ClosingConfig
from cocoon_p2p.payments.chain.base import ChainBackend
from cocoon_p2p.payments.chain.emulator import EmulatorChain
from cocoon_p2p.payments.chain.wallet import Wallet
from cocoon_p2p.payments.channel import PayeeChannel, PayerChannel
from cocoon_p2p.payments.contract_code import ensure_contract_code
from cocoon_p2p.payments.params import ChannelParams, SignedState, random_channel_id
from cocoon_p2p.payments.store import ChannelStore

T0 = 1_800_000_000
TON = 10**9
DEPOSIT = 2 * TON
CHUNK = 1_000_000  # price of one chunk of tokens, nanoTON
CLOSING = ClosingConfig(quarantine_duration=3600, misbehavior_fine=10_000_000, conditional_close_duration=600)


@dataclass
class Parties:
    chain: ChainBackend
    code: Cell
    params: ChannelParams
    key_a: Identity
    key_b: Identity
    wallet_a: Wallet
    wallet_b: Wallet
    payer: PayerChannel
    payee: PayeeChannel
    store_a: ChannelStore
    store_b: ChannelStore
    devnet: ChainBackend  # the faucet and clock (the chain itself, unless it is a real network's stand-in)

    @property
    def address(self) -> str:
        return self.params.address(self.code)

    async def pay_chunks(self, count: int) -> list[SignedState]:
        """The client pays for every chunk it received; each payment releases the next chunk.

        One durable write per side per payment: the worker's acceptance also records the chunk it
        releases on that credit. The first chunk goes out on credit alone (``reserve``).
        """
        if self.payee.delivered == self.payee.paid:
            assert await self.payee.reserve(self.payee.delivered + CHUNK, CHUNK)
        states = []
        for _ in range(count):
            received = self.payee.delivered
            state = await self.payer.pay(received)
            await self.payee.accept(SignedState.from_bytes(state.to_bytes()), received + CHUNK, CHUNK)
            states.append(state)
        return states

    async def wait_out_quarantine(self) -> None:
        closing = self.params.closing
        await self.devnet.advance_time(closing.quarantine_duration + closing.conditional_close_duration + 1)


async def open_parties(
    tmp_path: Path | None = None, chain: ChainBackend | None = None, devnet: ChainBackend | None = None
) -> Parties:
    chain = chain or EmulatorChain(clock=lambda: T0)
    devnet = devnet or chain
    code = ensure_contract_code()
    key_a, key_b = Identity.generate(), Identity.generate()
    wallet_a, wallet_b = Wallet(chain, Identity.generate()), Wallet(chain, Identity.generate())
    await devnet.faucet(wallet_a.address, 10 * TON)
    await devnet.faucet(wallet_b.address, 1 * TON)
    params = ChannelParams(
        random_channel_id(), key_a.public_key, key_b.public_key, wallet_a.address, wallet_b.address, DEPOSIT,
        closing=CLOSING,
    )  # fmt: skip
    where = (lambda name: tmp_path / name) if tmp_path is not None else (lambda name: ":memory:")
    store_a, store_b = ChannelStore(where("client.db")), ChannelStore(where("worker.db"))
    payer = await PayerChannel.create(params, key_a, store_a)
    payee = await PayeeChannel.create(params, key_b, store_b)
    await payer.set_payee_state(payee.own_state())
    await onchain.open_channel(chain, wallet_a, key_a, params, code)
    return Parties(chain, code, params, key_a, key_b, wallet_a, wallet_b, payer, payee, store_a, store_b, devnet)
