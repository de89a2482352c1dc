"""TcpSocketStream against trio's own stream conformance checks, plus what we add to it."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.net.socket_stream import YIELD_EVERY, TcpSocketStream


async def _pair() -> tuple[TcpSocketStream, TcpSocketStream]:
    left, right = socket.socketpair()
    return TcpSocketStream(left), TcpSocketStream(right)


async def _clogged_pair() -> tuple[TcpSocketStream, TcpSocketStream]:
    left, right = await _pair()
    # Fill the kernel buffers so the next send_all must block.
    while left.send_nowait(b"x" * 65536):
        pass
    return left, right


async def test_round_trip_half_close_and_eof() -> None:
    left, right = await _pair()
    await left.send_all(b"hello")
    assert await right.receive_some(5) == b"hello"
    await left.send_eof()
    assert await right.receive_some(10) == b""
    await right.send_all(b"still open this way")
    assert await left.receive_some(100) == b"still open this way"
    await left.aclose()
    await right.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await left.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await left.receive_some(1)


async def test_closing_wakes_a_parked_receiver_and_concurrent_use_is_refused() -> None:
    left, right = await _pair()
    caught: list[BaseException] = []

    async def reader() -> None:
        try:
            await right.receive_some(10)
        except BaseException as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await right.receive_some(10)
        await right.aclose()
    assert isinstance(caught[0], trio.ClosedResourceError)
    await left.aclose()


async def test_a_blocked_sender_finishes_when_the_reader_drains() -> None:
    left, right = await _clogged_pair()
    payload = b"q" * 300_000
    received = bytearray()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(left.send_all, payload)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            left.send_nowait(b"x")
        while not received.endswith(payload):
            received += await right.receive_some(1 << 16)
    await left.aclose()
    await right.aclose()


async def test_tcp_network_hands_out_socket_streams_over_ipv4() -> None:
    network = TcpNetwork()
    got: list[bytes] = []

    async def handler(stream: trio.abc.Stream, remote: str) -> None:
        assert isinstance(stream, TcpSocketStream)
        got.append(await stream.receive_some(100))
        await stream.send_all(b"pong")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        address = await nursery.start(network.serve, "127.0.0.1:0", handler)
        client = await network.dial(address)
        assert isinstance(client, TcpSocketStream)
        assert client.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await client.send_all(b"ping")
        assert await client.receive_some(100) == b"pong"
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert got == [b"ping"]


async def test_a_reader_that_never_blocks_still_yields_to_other_tasks() -> None:
    left, right = await _pair()
    await left.send_all(b"y" * 100_000)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        before = ticks
        for _ in range(YIELD_EVERY * 4):
            await right.receive_some(1)
        assert ticks - before >= 3
        nursery.cancel_scope.cancel()


async def test_peer_reset_is_a_broken_resource_error() -> None:
    left, right = await _pair()
    right.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await right.aclose()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(100):
            await left.send_all(b"z" * 65536)
