"""One chain for several node processes: a loopback msgpack service and the backend that talks to it.

``cocoon-p2p chain`` runs :func:`serve_chain` in front of an :class:`EmulatorChain` with a data
dir; each node points its ``--chain host:port`` at it and gets a :class:`RemoteChain`, which is a
``ChainBackend`` like any other -- so a devnet's nodes see one set of accounts and one clock.

Wire: each frame is a 4-byte big-endian length and a msgpack map. Requests are
``{"id", "m": method, "p": params}``, answers ``{"id", "ok": true, "r": result}`` or
``{"id", "ok": false, "e": {"type", "msg"}}``. Cells travel as BOC bytes, get-method stacks as a
serialized ``VmStack`` BOC. Methods: ``now``, ``advance_time {seconds}``, ``account {address}``,
``send {boc}``, ``faucet {address, amount}``, ``get {address, method, stack}``. There is no
authentication: the service refuses to listen beyond loopback unless told to (a devnet faucet is a
mint).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from pytoniq_core import Cell, Slice
from pytoniq_core.tlb import VmStack

from ...errors import CodecError, ConfigError
from ...net import Network
from ...net.tcp import is_loopback
from ...wire.codec import pack, unpack_map
from ..errors import ChainError, NotSupported
from .base import AccountInfo, AddressLike, ChainBackend, Receipt, TxOutcome, raw_address

log = logging.getLogger(__name__)

MAX_FRAME = 4 << 20
_LEN = struct.Struct(">I")
_ERRORS: dict[str, type[ChainError]] = {"NotSupported": NotSupported, "ChainError": ChainError}


async def _read_exactly(stream: trio.abc.Stream, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        data = await stream.receive_some(max(n - len(buf), 1 << 16))
        if not data:
            raise trio.EndOfChannel
        buf += data
    out = bytes(buf[:n])
    del buf[:n]
    return out


async def _read_frame(stream: trio.abc.Stream, buf: bytearray) -> dict[str, Any]:
    (length,) = _LEN.unpack(await _read_exactly(stream, 4, buf))
    if length > MAX_FRAME:
        raise CodecError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return unpack_map(await _read_exactly(stream, length, buf), max_size=MAX_FRAME)


async def _write_frame(stream: trio.abc.Stream, message: dict[str, Any]) -> None:
    data = pack(message)
    await stream.send_all(_LEN.pack(len(data)) + data)


def _receipt_to_wire(r: Receipt) -> dict[str, Any]:
    txs = [
        [t.address, t.success, t.exit_code, t.fees, t.value_in, [list(o) for o in t.outgoing], t.bounced_in]
        for t in r.transactions
    ]
    return {"accepted": r.accepted, "observed": r.observed, "error": r.error, "exit_code": r.exit_code, "txs": txs}


def _receipt_from_wire(d: dict[str, Any]) -> Receipt:
    txs = tuple(
        TxOutcome(a, ok, code, fees, value_in, tuple((o[0], o[1], o[2]) for o in outgoing), bounced)
        for a, ok, code, fees, value_in, outgoing, bounced in d["txs"]
    )
    return Receipt(d["accepted"], txs, d["observed"], d["error"], d["exit_code"])


def _boc(cell: Cell | None) -> bytes | None:
    return None if cell is None else cell.to_boc()


async def _dispatch(backend: ChainBackend, method: str, p: dict[str, Any]) -> Any:
    if method == "now":
        return await backend.now()
    if method == "advance_time":
        return await backend.advance_time(int(p["seconds"]))
    if method == "account":
        a = await backend.get_account(p["address"])
        return {
            "address": a.address,
            "status": a.status,
            "balance": a.balance,
            "code": _boc(a.code),
            "data": _boc(a.data),
        }
    if method == "send":
        return _receipt_to_wire(await backend.send_message(Cell.one_from_boc(p["boc"])))
    if method == "faucet":
        return _receipt_to_wire(await backend.faucet(p["address"], int(p["amount"])))
    if method == "get":
        stack = VmStack.deserialize(Slice.one_from_boc(p["stack"]))
        result = await backend.run_get_method(p["address"], p["method"], stack)
        return VmStack.serialize(result).to_boc()
    raise ChainError(f"unknown method {method!r}")


async def _serve_connection(backend: ChainBackend, stream: trio.abc.Stream, remote: str) -> None:
    buf = bytearray()
    async with stream:
        while True:
            try:
                request = await _read_frame(stream, buf)
            except (trio.EndOfChannel, trio.BrokenResourceError, CodecError, struct.error):
                return
            answer: dict[str, Any] = {"id": request.get("id")}
            try:
                answer |= {"ok": True, "r": await _dispatch(backend, str(request.get("m")), request.get("p") or {})}
            except ChainError as exc:
                answer |= {"ok": False, "e": {"type": type(exc).__name__, "msg": str(exc)}}
            except Exception as exc:  # a malformed request must not take the service down
                log.warning("chain request from %s failed: %r", remote, exc)
                answer |= {"ok": False, "e": {"type": "ChainError", "msg": f"bad request: {exc!r}"}}
            try:
                await _write_frame(stream, answer)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


async def serve_chain(
    backend: ChainBackend,
    network: Network,
    listen: str,
    *,
    allow_remote: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``backend`` on ``listen`` until cancelled; reports the bound address."""
    if not allow_remote and not is_loopback(listen):
        raise ConfigError(f"chain service address {listen} is not loopback: it has a faucet and no authentication")

    async def handler(stream: trio.abc.Stream, remote: str) -> None:
        await _serve_connection(backend, stream, remote)

    await network.serve(listen, handler, task_status=task_status)


async def run_emulator_service(
    data_dir: Path, network: Network, listen: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """What ``cocoon-p2p chain`` runs: a persistent emulated chain behind :func:`serve_chain`."""
    from .emulator import EmulatorChain

    chain = EmulatorChain(data_dir)
    try:
        await serve_chain(chain, network, listen, task_status=task_status)
    finally:
        chain.close()


class RemoteChain(ChainBackend):
    """A ChainBackend served by :func:`serve_chain` (one connection, one request at a time)."""

    def __init__(self, network: Network, address: str) -> None:
        self.network = network
        self.address = address
        self._stream: trio.abc.Stream | None = None
        self._buf = bytearray()
        self._lock = trio.Lock()
        self._next_id = 0

    async def _call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        async with self._lock:
            for attempt in (1, 2):  # one reconnect: the service may have restarted
                try:
                    if self._stream is None:
                        self._stream, self._buf = await self.network.dial(self.address), bytearray()
                    self._next_id += 1
                    await _write_frame(self._stream, {"id": self._next_id, "m": method, "p": params or {}})
                    answer = await _read_frame(self._stream, self._buf)
                    break
                except (OSError, trio.BrokenResourceError, trio.EndOfChannel, CodecError) as exc:
                    await self._drop()
                    if attempt == 2:
                        raise ChainError(f"chain service at {self.address}: {exc!r}") from None
            if answer.get("id") != self._next_id:
                await self._drop()
                raise ChainError("chain service answered out of order")
        if not answer.get("ok"):
            error = answer.get("e") or {}
            raise _ERRORS.get(error.get("type", ""), ChainError)(str(error.get("msg")))
        return answer.get("r")

    async def _drop(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()

    async def now(self) -> int:
        return int(await self._call("now"))

    async def advance_time(self, seconds: int) -> int:
        return int(await self._call("advance_time", {"seconds": seconds}))

    async def get_account(self, address: AddressLike) -> AccountInfo:
        a = await self._call("account", {"address": raw_address(address)})
        code = None if a["code"] is None else Cell.one_from_boc(a["code"])
        data = None if a["data"] is None else Cell.one_from_boc(a["data"])
        return AccountInfo(a["address"], a["status"], a["balance"], code, data)

    async def send_message(self, message: Cell) -> Receipt:
        return _receipt_from_wire(await self._call("send", {"boc": message.to_boc()}))

    async def faucet(self, address: AddressLike, amount: int) -> Receipt:
        return _receipt_from_wire(await self._call("faucet", {"address": raw_address(address), "amount": amount}))

    async def run_get_method(self, address: AddressLike, method: str, stack: Sequence[Any] = ()) -> list[Any]:
        params = {"address": raw_address(address), "method": method, "stack": VmStack.serialize(list(stack)).to_boc()}
        return VmStack.deserialize(Slice.one_from_boc(await self._call("get", params)))
