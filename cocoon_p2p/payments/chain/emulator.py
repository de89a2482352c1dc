"""An embedded local TON chain: real transactions of real contracts in pytvm's emulator.

Every message runs through ``TransactionEmulator`` (the same transaction code validators run), its
outbound internal messages are delivered in order until the trace ends, and get-methods run in
``TvmEmulator`` against the resulting state. There are no blocks or shards: one account map, one
logical-time counter and a clock.

- **Clock**: chain time = ``clock()`` + an offset that ``advance_time`` raises (quarantines pass
  without waiting). ``clock`` defaults to wall time; tests pass a constant.
- **Faucet**: ``faucet(address, amount)`` delivers an internal message from ``FAUCET_ADDRESS``
  carrying ``amount`` -- a devnet mint. The destination's code runs as for any deposit; an address
  with no contract yet becomes an uninit account holding the coins (how wallets are funded on
  testnet before their first outgoing transfer deploys them).
- **Persistence**: with a ``data_dir``, the accounts, clock offset and logical time are rewritten
  atomically after every trace, and an exclusive lock keeps a second process out. Several node
  processes share one chain through ``cocoon-p2p chain`` (``service.py``), not through the files.
"""

from __future__ import annotations

import base64
import fcntl
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import trio
from pytoniq_core import Address, Cell, Slice
from pytoniq_core.tlb import ShardAccount, Transaction, VmStack
from pytoniq_core.tlb.block import CurrencyCollection
from pytoniq_core.tlb.transaction import InternalMsgInfo, MessageAny
from pytvm.transaction_emulator import TransactionEmulator
from pytvm.transaction_emulator.trace import EMPTY_STATE
from pytvm.tvm_emulator import TvmEmulator
from pytvm.utils import DEFAULT_CONFIG_BOC, get_method_id

from ...identity.keystore import write_private_file
from ...net.clock import SystemClock
from ..errors import ChainError
from ._engine import emulator_engine
from .base import AccountInfo, AddressLike, ChainBackend, Receipt, TxOutcome, account_info, raw_address

FAUCET_ADDRESS = "-1:" + "fa" * 32
STATE_FILE = "chain.msgpack"
LOCK_FILE = "chain.lock"
LT_STEP = 1_000  # room for a transaction's outbound messages between consecutive transactions
TRACE_LIMIT = 64
_STATE_VERSION = 1
T = TypeVar("T")


def _b64(cell: Cell) -> bytes:
    return base64.b64encode(cell.to_boc())


def _summarize(address: str, tx: Transaction) -> TxOutcome:
    description = tx.description
    compute = getattr(description, "compute_ph", None)
    exit_code = compute.exit_code if compute is not None and compute.type_ == "vm" else None
    in_msg = tx.in_msg
    internal_in = in_msg is not None and in_msg.is_internal
    outgoing = tuple(
        (raw_address(m.info.dest), m.info.value.grams, m.info.fwd_fee) for m in tx.out_msgs if m.is_internal
    )
    return TxOutcome(
        address=address,
        success=not getattr(description, "aborted", False),
        exit_code=exit_code,
        fees=tx.total_fees.grams,
        value_in=in_msg.info.value.grams if internal_in else 0,
        outgoing=outgoing,
        bounced_in=bool(internal_in and in_msg.info.bounced),
    )


class EmulatorChain(ChainBackend):
    """A local chain; sync ``*_sync`` methods are thread-safe, the async ones are the ChainBackend."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        clock: Callable[[], float] | None = None,
        threaded: bool = False,
    ) -> None:
        # threaded=False runs the (millisecond) emulator calls on the event loop: deterministic under
        # trio's MockClock, which would otherwise jump time while a worker thread runs.
        self._engine = emulator_engine()
        self._tx_emulator = TransactionEmulator(engine=self._engine)
        self._config = Cell.one_from_boc(base64.b64decode(DEFAULT_CONFIG_BOC))
        self._clock = clock or SystemClock().now
        self._threaded = threaded
        self._lock = threading.Lock()
        self._accounts: dict[str, bytes] = {}
        self._lt = 1_000_000
        self._offset = 0
        self._last_now = 0
        self._data_dir = data_dir
        self._lock_fd: int | None = None
        if data_dir is not None:
            self._open_dir(data_dir)

    # ---- persistence ----

    def _open_dir(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ChainError(
                f"{data_dir} is in use by another process: share one chain through `cocoon-p2p chain`"
            ) from None
        self._lock_fd = fd
        path = data_dir / STATE_FILE
        if path.exists():
            state = msgpack.unpackb(path.read_bytes(), raw=False)
            if state.get("version") != _STATE_VERSION:
                raise ChainError(f"{path}: unknown chain state version {state.get('version')}")
            self._accounts = dict(state["accounts"])
            self._lt, self._offset, self._last_now = state["lt"], state["offset"], state["last_now"]

    def _save(self) -> None:
        if self._data_dir is None:
            return
        state = {
            "version": _STATE_VERSION,
            "lt": self._lt,
            "offset": self._offset,
            "last_now": self._last_now,
            "accounts": self._accounts,
        }
        write_private_file(self._data_dir / STATE_FILE, msgpack.packb(state, use_bin_type=True))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    async def aclose(self) -> None:
        self.close()

    # ---- sync core ----

    def now_sync(self) -> int:
        with self._lock:
            return self._now()

    def _now(self) -> int:
        # never backwards, even if the wall clock steps back
        self._last_now = max(self._last_now, int(self._clock()) + self._offset)
        return self._last_now

    def advance_time_sync(self, seconds: int) -> int:
        if seconds < 0:
            raise ValueError("chain time only moves forward")
        with self._lock:
            self._offset += int(seconds)
            now = self._now()
            self._save()
            return now

    def shard_account_boc(self, address: AddressLike) -> bytes | None:
        with self._lock:
            return self._accounts.get(raw_address(address))

    def get_account_sync(self, address: AddressLike) -> AccountInfo:
        key = raw_address(address)
        with self._lock:
            boc = self._accounts.get(key)
        if boc is None:
            return AccountInfo(key, "nonexist", 0)
        return account_info(key, ShardAccount.deserialize(Slice.one_from_boc(boc)))

    def send_message_sync(self, message: Cell) -> Receipt:
        with self._lock:
            receipt = self._run_trace(message)
            self._save()
            return receipt

    def faucet_sync(self, address: AddressLike, amount: int) -> Receipt:
        if amount <= 0:
            raise ValueError("a faucet credit is a positive amount of nanoTON")
        dest = Address(raw_address(address))
        value = CurrencyCollection(grams=amount, other=None)
        info = InternalMsgInfo(True, False, False, Address(FAUCET_ADDRESS), dest, value, 0, 0, 0, 0)
        return self.send_message_sync(MessageAny(info=info, init=None, body=Cell.empty()).serialize())

    def run_get_method_sync(self, address: AddressLike, method: str, stack: Sequence[Any] = ()) -> list[Any]:
        key = raw_address(address)
        info = self.get_account_sync(key)
        if info.status != "active" or info.code is None or info.data is None:
            raise ChainError(f"{key} has no active contract to run {method} on")
        with self._lock:
            now = self._now()
        tvm = TvmEmulator(info.code, info.data, engine=self._engine)
        tvm.set_c7(key, now, info.balance, "00" * 32, self._config)
        result = tvm.raw_run_get_method(get_method_id(method), VmStack.serialize(list(stack)))
        if not result.get("success", False):
            raise ChainError(f"{method} on {key} failed: {result.get('error')}")
        exit_code = int(result.get("vm_exit_code", 0))
        if exit_code not in (0, 1):
            raise ChainError(f"{method} on {key} exited with code {exit_code}")
        return VmStack.deserialize(Slice.one_from_boc(result["stack"]))

    def _run_trace(self, first: Cell) -> Receipt:
        queue: deque[Cell] = deque([first])
        outcomes: list[TxOutcome] = []
        now = self._now()
        is_first = True
        while queue:
            if len(outcomes) >= TRACE_LIMIT:
                raise ChainError(f"trace longer than {TRACE_LIMIT} transactions")
            message = queue.popleft()
            parsed = MessageAny.deserialize(message.begin_parse())
            dest = raw_address(parsed.info.dest)
            shard = self._accounts.get(dest)
            shard_cell = Cell.one_from_boc(shard) if shard is not None else EMPTY_STATE
            self._tx_emulator.set_unixtime(now)
            self._tx_emulator.set_lt(self._lt)
            self._lt += LT_STEP
            result = self._tx_emulator.raw_emulate_transaction(shard_cell, message)
            if not result.get("success", False):
                if is_first:  # an external message the contract did not accept: nothing happened
                    return Receipt(False, (), error=result.get("error"), exit_code=result.get("vm_exit_code"))
                raise ChainError(f"emulator failed on a message to {dest}: {result.get('error')}")
            is_first = False
            self._accounts[dest] = base64.b64decode(result["shard_account"])
            tx = Transaction.deserialize(Slice.one_from_boc(result["transaction"]))
            outcomes.append(_summarize(dest, tx))
            queue.extend(m.serialize() for m in tx.out_msgs if m.is_internal)
        return Receipt(True, tuple(outcomes))

    # ---- ChainBackend ----

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._threaded:
            return await trio.to_thread.run_sync(fn, *args)
        await trio.lowlevel.checkpoint()
        return fn(*args)

    async def now(self) -> int:
        return await self._call(self.now_sync)

    async def advance_time(self, seconds: int) -> int:
        return await self._call(self.advance_time_sync, seconds)

    async def get_account(self, address: AddressLike) -> AccountInfo:
        return await self._call(self.get_account_sync, address)

    async def send_message(self, message: Cell) -> Receipt:
        return await self._call(self.send_message_sync, message)

    async def faucet(self, address: AddressLike, amount: int) -> Receipt:
        return await self._call(self.faucet_sync, address, amount)

    async def run_get_method(self, address: AddressLike, method: str, stack: Sequence[Any] = ()) -> list[Any]:
        return await self._call(self.run_get_method_sync, address, method, stack)
