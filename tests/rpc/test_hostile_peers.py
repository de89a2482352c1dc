"""A live listener fed garbage keeps serving; tampered ciphertext closes that connection."""

from __future__ import annotations

import os
import struct

import pytest
import trio

from cocoon_p2p.errors import ConnectionClosed, DecryptError
from cocoon_p2p.identity import Identity
from cocoon_p2p.net import split_address
from cocoon_p2p.rpc import CallContext, Host
from cocoon_p2p.wire import codec
from cocoon_p2p.wire.limits import Limits
from cocoon_p2p.wire.secure import secure_stream
from tests.conftest import running_hosts


async def _echo(ctx: CallContext, params: dict) -> dict:
    return params


async def _raw(address: str) -> trio.SocketStream:
    host, port = split_address(address)
    return await trio.open_tcp_stream(host, port)


async def _assert_serving(server: Host, client: Host) -> None:
    with trio.fail_after(10):
        conn = await client.connect(server.listen_address, expected=server.peer_id)
        assert await conn.call("echo", {"ok": 1}) == {"ok": 1}


async def test_listener_survives_garbage_and_keeps_serving() -> None:
    limits = Limits(handshake_timeout=2.0)
    async with running_hosts(2, limits=limits) as (server, client):
        server.router.unary("echo", _echo)
        await _assert_serving(server, client)
        addr = server.listen_address
        half_open: list[trio.SocketStream] = []
        async with trio.open_nursery() as nursery:

            async def attack(payload: bytes, *, close: bool = True) -> None:
                stream = await _raw(addr)
                try:
                    await stream.send_all(payload)
                    if close:
                        with trio.move_on_after(3):
                            while await stream.receive_some(4096):
                                pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                finally:
                    if close:
                        await stream.aclose()

            for _ in range(20):
                nursery.start_soon(attack, os.urandom(512))  # random bytes
            nursery.start_soon(attack, b"\x00\x20" + os.urandom(10))  # truncated handshake
            nursery.start_soon(attack, b"\xff\xff" + os.urandom(100))  # oversized length prefix
            nursery.start_soon(attack, b"\x00\x00")  # zero-length frame
            for _ in range(200):  # half-open: connect, say nothing, hold the socket
                half_open.append(await _raw(addr))
            await _assert_serving(server, client)
        await _malformed_after_handshake(server)
        await _assert_serving(server, client)
        # Half-open sockets are cut at the handshake deadline, not kept forever.
        await trio.sleep(limits.handshake_timeout + 0.5)
        closed = 0
        for stream in half_open:
            with trio.move_on_after(1):
                try:
                    if await stream.receive_some(10) == b"":
                        closed += 1
                except trio.BrokenResourceError:
                    closed += 1
            await stream.aclose()
        assert closed == len(half_open)
        assert server.handshake_failures >= 20
        await _assert_serving(server, client)


async def _malformed_after_handshake(server: Host) -> None:
    """Valid Noise session, then messages that break the RPC protocol: each closes only its connection."""
    bad_messages = [
        b"\x92\x01\x02",  # msgpack array, not a map
        codec.pack({"t": "req", "id": 2, "m": "echo", "p": {}}),  # id from the server's half
        codec.pack({"t": "warp", "id": 1}),  # unknown type
        codec.pack({"t": "req", "id": "one", "m": "echo", "p": {}}),  # wrong type
        b"\xc1",  # never-used msgpack byte
    ]
    for payload in bad_messages:
        stream = await _raw(server.listen_address)
        channel = await secure_stream(stream, Identity.generate(), initiator=True, expected_peer_id=server.peer_id)
        await channel.send_message(payload)
        with trio.fail_after(5):
            with pytest.raises((trio.EndOfChannel, trio.BrokenResourceError)):
                while True:
                    await channel.receive_message()
        await channel.aclose()


class _TamperingProxy:
    """Forwards bytes both ways; flips one ciphertext byte in the first client frame after the handshake."""

    def __init__(self, target: str, position: int) -> None:
        self.target = target
        self.position = position

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(f"127.0.0.1:{listeners[0].socket.getsockname()[1]}")
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream = await _raw(self.target)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, upstream, client, False)
            nursery.start_soon(self._pump, client, upstream, True)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, tamper: bool) -> None:
        buf = b""
        frames = 0
        try:
            while True:
                data = await src.receive_some(65536)
                if not data:
                    break
                if not tamper:
                    await dst.send_all(data)
                    continue
                buf += data
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
                    size = struct.unpack(">H", buf[:2])[0]
                    frame = bytearray(buf[: 2 + size])
                    buf = buf[2 + size :]
                    frames += 1
                    if frames == 3:  # frames 1-2 are handshake messages 1 and 3
                        index = 2 + (self.position % size)
                        frame[index] ^= 0x01
                    await dst.send_all(bytes(frame))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(dst)


@pytest.mark.parametrize("position", [0, 1, 7, 16, 40, -1, -16])
async def test_flipping_a_ciphertext_byte_closes_the_connection(position: int) -> None:
    async with running_hosts(2) as (server, client):
        server.router.unary("echo", _echo)
        accepted = []
        server.on_connection.append(accepted.append)
        async with trio.open_nursery() as nursery:
            proxy_addr = await nursery.start(_TamperingProxy(server.listen_address, position).serve)
            conn = await client.connect(proxy_addr, expected=server.peer_id)
            with trio.fail_after(10), pytest.raises(ConnectionClosed):
                await conn.call("echo", {"x": "y" * 50})
            with trio.fail_after(10):
                await accepted[0].wait_closed()
            assert isinstance(accepted[0].close_reason, DecryptError)
            nursery.cancel_scope.cancel()
