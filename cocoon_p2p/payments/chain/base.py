"""The chain seam: what the payments layer needs from TON, whatever runs it.

A backend is deliberately liteserver-shaped -- accounts, get-methods, external messages, time -- so
the same code builds and signs every message whether it then goes to the embedded emulator, to a
``cocoon-p2p chain`` service, or to a real network. Wallet logic lives above it (``wallet.py``).

Backends that run transactions locally (the emulator, the service in front of it) return receipts
with every transaction of the trace (``Receipt.observed``); a real network only says the message
was accepted for broadcast, so callers confirm effects through getters, never through receipts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytoniq_core import Address, Cell, Slice, StateInit
from pytoniq_core.tlb import ShardAccount
from pytoniq_core.tlb.transaction import ExternalMsgInfo, MessageAny

from ..cells import ClosingConfig, Quarantine, parse_quarantine
from ..errors import ChainError, NotSupported

CHANNEL_UNINITED = 0
CHANNEL_OPEN = 1
CHANNEL_CLOSURE_STARTED = 2
CHANNEL_SETTLING_CONDITIONALS = 3
CHANNEL_AWAITING_FINALIZATION = 4

AddressLike = Address | str


def raw_address(address: AddressLike) -> str:
    """``"0:<64 hex>"``: the one spelling used as a key everywhere in this package."""
    if isinstance(address, str):
        address = Address(address)
    return address.to_str(is_user_friendly=False)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    address: str
    status: str  # "nonexist" | "uninit" | "active" | "frozen"
    balance: int
    code: Cell | None = None
    data: Cell | None = None


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """One transaction of a trace, reduced to what callers and tests check."""

    address: str
    success: bool  # not aborted: compute and action phases both went through
    exit_code: int | None  # compute phase exit code; None when the compute phase was skipped
    fees: int
    value_in: int  # value of the inbound internal message (0 for an external one)
    outgoing: tuple[tuple[str, int, int], ...] = ()  # (destination, value, forward fee) per internal message
    bounced_in: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    accepted: bool  # the destination accepted the (external) message
    transactions: tuple[TxOutcome, ...] = ()
    observed: bool = True  # False: the backend cannot see the trace (real network)
    error: str | None = None
    exit_code: int | None = None  # why an external message was not accepted, when known

    def tx_at(self, address: AddressLike) -> TxOutcome | None:
        """The first transaction of the trace on ``address``."""
        key = raw_address(address)
        return next((tx for tx in self.transactions if tx.address == key), None)


@dataclass(frozen=True, slots=True)
class OnchainChannel:
    """``get_channel_data`` decoded."""

    state: int
    balance_a: int
    balance_b: int
    key_a: bytes
    key_b: bytes
    channel_id: int
    closing: ClosingConfig
    committed_seqno_a: int
    committed_seqno_b: int
    quarantine: Quarantine | None
    excess_fee: int
    address_a: str | None
    address_b: str | None
    extra: dict[str, Any] = field(default_factory=dict)


_STATUS = {"account_uninit": "uninit", "account_active": "active", "account_frozen": "frozen"}


def account_info(address: str, shard: ShardAccount | None) -> AccountInfo:
    """AccountInfo from a ShardAccount (the emulator and liteservers both hand out this TL-B)."""
    account = None if shard is None else shard.account
    if account is None:
        return AccountInfo(address, "nonexist", 0)
    storage = account.storage
    status = _STATUS.get(storage.state.type_, storage.state.type_)
    code = data = None
    if status == "active" and storage.state.state_init is not None:
        code, data = storage.state.state_init.code, storage.state.state_init.data
    return AccountInfo(address, status, storage.balance.grams, code, data)


def external_message(destination: AddressLike, body: Cell, init: StateInit | None = None) -> Cell:
    dest = Address(destination) if isinstance(destination, str) else destination
    return MessageAny(info=ExternalMsgInfo(None, dest, 0), init=init, body=body).serialize()


def _slice_address(value: Any) -> str | None:
    if isinstance(value, Cell):
        value = value.begin_parse()
    if isinstance(value, Slice):
        address = value.load_address()
        return None if address is None else raw_address(address)
    return None


def decode_channel_data(stack: Sequence[Any]) -> OnchainChannel:
    try:
        state, balances, keys, channel_id, config, seqnos, quarantine, payment = stack[:8]
        return OnchainChannel(
            state=int(state),
            balance_a=int(balances[0]),
            balance_b=int(balances[1]),
            key_a=int(keys[0]).to_bytes(32, "big"),
            key_b=int(keys[1]).to_bytes(32, "big"),
            channel_id=int(channel_id),
            closing=ClosingConfig(int(config[0]), int(config[1]), int(config[2])),
            committed_seqno_a=int(seqnos[0]),
            committed_seqno_b=int(seqnos[1]),
            quarantine=parse_quarantine(quarantine) if isinstance(quarantine, Cell) else None,
            excess_fee=int(payment[0]),
            address_a=_slice_address(payment[1]),
            address_b=_slice_address(payment[2]),
        )
    except (ValueError, TypeError, IndexError) as exc:
        raise ChainError(f"get_channel_data returned an unexpected stack: {exc}") from None


class ChainBackend(ABC):
    #: True when receipts carry the trace's transactions.
    observes_transactions: bool = True

    @abstractmethod
    async def now(self) -> int:
        """Chain time (Unix seconds) that the next transaction will see."""

    @abstractmethod
    async def get_account(self, address: AddressLike) -> AccountInfo: ...

    @abstractmethod
    async def send_message(self, message: Cell) -> Receipt:
        """Submit a serialized external message (as a liteserver's ``sendMessage`` takes it)."""

    @abstractmethod
    async def run_get_method(self, address: AddressLike, method: str, stack: Sequence[Any] = ()) -> list[Any]:
        """Run a get-method against the current state; raise ``ChainError`` on a non-zero exit."""

    async def faucet(self, address: AddressLike, amount: int) -> Receipt:
        """Credit ``amount`` nanoTON to ``address`` (devnets only)."""
        raise NotSupported(f"{type(self).__name__} has no faucet")

    async def advance_time(self, seconds: int) -> int:
        """Move chain time forward (devnets only); returns the new time."""
        raise NotSupported(f"{type(self).__name__} cannot move chain time")

    async def aclose(self) -> None:
        return None

    # ---- shared helpers built on the primitives ----

    async def balance(self, address: AddressLike) -> int:
        return (await self.get_account(address)).balance

    async def send_external(self, destination: AddressLike, body: Cell, init: StateInit | None = None) -> Receipt:
        return await self.send_message(external_message(destination, body, init))

    async def get_channel_state(self, address: AddressLike) -> int:
        account = await self.get_account(address)
        if account.status != "active":
            return CHANNEL_UNINITED
        return int((await self.run_get_method(address, "get_channel_state"))[0])

    async def get_channel_data(self, address: AddressLike) -> OnchainChannel:
        return decode_channel_data(await self.run_get_method(address, "get_channel_data"))
