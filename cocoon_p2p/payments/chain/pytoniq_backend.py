"""TON testnet/mainnet through pytoniq's ``LiteBalancer``.

NOT RUN AGAINST A LIVE NETWORK IN THIS REPOSITORY: the build and CI machines have no network. What
is shared with the emulator -- signing wallet transfers (``wallet.py``), decoding accounts and
``get_channel_data`` (``base.py``), every channel action (``onchain.py``) -- is what the emulator
tests run. This module's own code (the asyncio bridge, the liteclient calls and their decoding) is
tested against an emulator-backed stand-in for the liteclient (``tests/payments/test_backends.py``);
the first live run still deserves a small testnet channel before real money.

pytoniq is asyncio; the rest of the project is trio. The client lives on its own event loop in a
daemon thread, and each call crosses over with ``run_coroutine_threadsafe`` while the trio side
waits in a worker thread. Nothing asyncio leaks out of this module.

A real network does not report what a message did: ``send_message`` returns an unobserved receipt
once a liteserver took the message, ``Wallet.transfer`` then waits for the wallet's seqno to move,
and ``onchain`` confirms every effect through the channel's getters.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import trio
from pytoniq_core import Address, Cell

from ...identity import Identity
from ..errors import ChainError
from .base import AccountInfo, AddressLike, ChainBackend, Receipt, account_info, raw_address

T = TypeVar("T")
#: Builds the (not yet started) liteclient on the asyncio loop; anything with LiteBalancer's methods.
ClientFactory = Callable[[], Any]


def wallet_key_from_file(path: Path) -> Identity:
    """A wallet key file holds either the 24-word mnemonic or the 32-byte ed25519 seed in hex."""
    from pytoniq_core.crypto.keys import mnemonic_is_valid, mnemonic_to_private_key

    text = path.read_text().strip()
    words = text.split()
    if len(words) == 24:
        if not mnemonic_is_valid(words):
            raise ChainError(f"{path}: not a valid TON mnemonic")
        _, secret = mnemonic_to_private_key(words)
        return Identity(secret[:32])
    try:
        return Identity(bytes.fromhex(text))
    except ValueError:
        raise ChainError(f"{path}: expected a 24-word mnemonic or a 64-hex-digit seed") from None


class PytoniqBackend(ChainBackend):
    observes_transactions = False

    def __init__(self, client_factory: ClientFactory) -> None:
        self._factory = client_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None

    @classmethod
    def from_config_file(cls, path: Path, *, trust_level: int = 2, timeout: int = 10) -> PytoniqBackend:
        """A backend over the liteservers listed in a TON global config file (testnet or mainnet)."""
        from pytoniq import LiteBalancer

        config = json.loads(path.read_text())
        return cls(lambda: LiteBalancer.from_config(config, trust_level=trust_level, timeout=timeout))

    async def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="pytoniq-asyncio", daemon=True)
        self._thread.start()
        self._loop = loop

        async def connect() -> Any:
            client = self._factory()
            await client.start_up()
            return client

        self._client = await self._run(connect())

    async def aclose(self) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            client, self._client = self._client, None
            with trio.CancelScope(shield=True):
                await self._run(client.close_all())
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await trio.to_thread.run_sync(thread.join)
        loop.close()

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise ChainError("pytoniq backend not started: call `await backend.start()` first")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        except trio.Cancelled:
            future.cancel()
            raise
        except ChainError:
            raise
        except Exception as exc:  # liteserver/transport errors come in many types
            raise ChainError(f"liteserver: {exc!r}") from exc

    @property
    def client(self) -> Any:
        if self._client is None:
            raise ChainError("pytoniq backend not started")
        return self._client

    async def now(self) -> int:
        answer = await self._run(self.client.get_time())
        return int(answer["now"] if isinstance(answer, dict) else answer)

    async def get_account(self, address: AddressLike) -> AccountInfo:
        key = raw_address(address)
        _, shard = await self._run(self.client.raw_get_account_state(Address(key)))
        return account_info(key, shard)

    async def send_message(self, message: Cell) -> Receipt:
        await self._run(self.client.raw_send_message(message.to_boc()))
        return Receipt(True, (), observed=False)

    async def run_get_method(self, address: AddressLike, method: str, stack: Sequence[Any] = ()) -> list[Any]:
        return list(await self._run(self.client.run_get_method(Address(raw_address(address)), method, list(stack))))
