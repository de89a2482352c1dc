"""A WalletV4R2 account we hold the key of: the one code path that signs what goes on chain.

Every backend gets the same signed external message (built with pytoniq's ``WalletV4R2`` helpers);
only the delivery differs. On a backend that cannot observe traces, ``transfer`` waits until the
wallet's seqno moves, which is the only proof a real network gives that the wallet acted.
"""

from __future__ import annotations

import trio
from pytoniq.contract.wallets.wallet import WALLET_V4_R2_CODE, WalletV4, WalletV4R2
from pytoniq_core import Address, Cell, StateInit

from ...identity import Identity
from ..errors import ChainError
from .base import AddressLike, ChainBackend, Receipt, external_message, raw_address

DEFAULT_WALLET_ID = 698983191  # the standard subwallet id for workchain 0
MESSAGE_TTL_S = 120
SEND_MODE_PAY_FEES_SEPARATELY = 3  # +1 fees from the wallet balance, +2 ignore action errors


class Wallet:
    def __init__(self, backend: ChainBackend, key: Identity, *, workchain: int = 0) -> None:
        self.backend = backend
        self.key = key
        self.wallet_id = DEFAULT_WALLET_ID + workchain
        data = WalletV4.create_data_cell(key.public_key, self.wallet_id, workchain)
        self.state_init = StateInit(code=WALLET_V4_R2_CODE, data=data)
        self.address: str = raw_address(Address((workchain, self.state_init.serialize().hash)))
        self._lock = trio.Lock()  # one seqno in flight at a time

    def __repr__(self) -> str:
        return f"Wallet({self.address[:14]}…)"

    async def balance(self) -> int:
        return await self.backend.balance(self.address)

    async def seqno(self) -> int:
        account = await self.backend.get_account(self.address)
        if account.status != "active":
            return 0
        return int((await self.backend.run_get_method(self.address, "seqno"))[0])

    def transfer_message(
        self,
        seqno: int,
        valid_until: int,
        destination: AddressLike,
        value: int,
        body: Cell | None = None,
        init: StateInit | None = None,
        *,
        bounce: bool = True,
        deploy: bool = False,
    ) -> Cell:
        """The signed external message: pure, so every backend (and a test) can build it identically."""
        dest = Address(destination) if isinstance(destination, str) else destination
        message = WalletV4R2.create_wallet_internal_message(
            destination=dest,
            send_mode=SEND_MODE_PAY_FEES_SEPARATELY,
            value=value,
            body=body if body is not None else Cell.empty(),
            state_init=init,
            bounce=bounce,
        )
        signer_key = self.key.seed + self.key.public_key
        signed = WalletV4R2.raw_create_transfer_msg(
            private_key=signer_key, seqno=seqno, wallet_id=self.wallet_id, messages=[message], valid_until=valid_until
        )
        return external_message(self.address, signed, self.state_init if deploy else None)

    async def transfer(
        self,
        destination: AddressLike,
        value: int,
        body: Cell | None = None,
        init: StateInit | None = None,
        *,
        bounce: bool = True,
        confirm_timeout: float = 90.0,
    ) -> Receipt:
        """Send ``value`` nanoTON (plus ``body``/``init``) from this wallet; deploys the wallet on first use."""
        async with self._lock:
            account = await self.backend.get_account(self.address)
            if account.balance < value:
                raise ChainError(f"wallet {self.address} holds {account.balance} nanoTON, {value} needed")
            deploy = account.status != "active"
            seqno = 0 if deploy else await self.seqno()
            valid_until = await self.backend.now() + MESSAGE_TTL_S
            message = self.transfer_message(
                seqno, valid_until, destination, value, body, init, bounce=bounce, deploy=deploy
            )
            receipt = await self.backend.send_message(message)
            if not receipt.accepted:
                raise ChainError(f"wallet {self.address} refused the transfer: {receipt.error}")
            if not receipt.observed:
                await self._wait_for_seqno(seqno + 1, confirm_timeout)
            return receipt

    async def _wait_for_seqno(self, target: int, timeout: float) -> None:
        with trio.move_on_after(timeout):
            while await self.seqno() < target:
                await trio.sleep(2.0)
            return
        raise ChainError(f"wallet {self.address}: seqno did not reach {target} within {timeout:.0f} s")
