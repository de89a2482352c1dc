"""Noise transport throughput and RPC round trip against raw trio TCP, measured in the same run.

Targets (issue: foundation): throughput ≥ 0.45× raw TCP; RPC p50 ≤ 2× a raw TCP ping-pong.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from cocoon_p2p.identity import Identity
from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.net.socket_stream import TcpSocketStream
from cocoon_p2p.rpc import CallContext, Host
from cocoon_p2p.wire.limits import Limits
from cocoon_p2p.wire.secure import secure_stream

TOTAL_BYTES = 256 << 20
MESSAGE = 1 << 20
ROUND_TRIPS = 3000


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, server


async def raw_throughput() -> float:
    client, server = await _tcp_pair()
    chunk = b"x" * MESSAGE
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:

        async def sink() -> None:
            got = 0
            while got < TOTAL_BYTES:
                got += len(await server.receive_some(1 << 18))

        nursery.start_soon(sink)
        for _ in range(TOTAL_BYTES // MESSAGE):
            await client.send_all(chunk)
    elapsed = time.perf_counter() - started
    await client.aclose()
    await server.aclose()
    return TOTAL_BYTES / elapsed / 1e6


async def noise_throughput() -> float:
    # The production stream (TcpNetwork hands these out), on the same loopback pair.
    client_tcp, server_tcp = await _tcp_pair()
    client_raw, server_raw = TcpSocketStream.from_trio(client_tcp), TcpSocketStream.from_trio(server_tcp)
    async with trio.open_nursery() as nursery:
        server_box: list = []

        async def accept() -> None:
            server_box.append(await secure_stream(server_raw, Identity.generate(), initiator=False))

        nursery.start_soon(accept)
        client = await secure_stream(client_raw, Identity.generate(), initiator=True)
    server = server_box[0]
    payload = b"x" * (MESSAGE - 64)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:

        async def sink() -> None:
            for _ in range(TOTAL_BYTES // MESSAGE):
                await server.receive_message()

        nursery.start_soon(sink)
        for _ in range(TOTAL_BYTES // MESSAGE):
            await client.send_message(payload)
    elapsed = time.perf_counter() - started
    await client.aclose()
    await server.aclose()
    return TOTAL_BYTES / elapsed / 1e6


def aead_rate() -> float:
    """One core sealing 64 KiB Noise frames with pynacl's ChaCha20-Poly1305, MB/s.

    Opening costs the same, so even with sealing and opening on separate cores and no
    other work at all, Noise throughput cannot pass this rate: it is the ceiling that
    DESIGN.md's choice of pynacl puts on the throughput ratio.
    """
    from cocoon_p2p.wire.noise import CipherState

    cipher = CipherState(bytes(32))
    frame = b"x" * 65519
    started = time.perf_counter()
    rounds = 2000
    for _ in range(rounds):
        cipher.encrypt_with_ad(b"", frame)
    return rounds * len(frame) / (time.perf_counter() - started) / 1e6


async def raw_ping_pong() -> list[float]:
    client, server = await _tcp_pair()
    samples = []
    async with trio.open_nursery() as nursery:

        async def echo() -> None:
            while data := await server.receive_some(4096):
                await server.send_all(data)

        nursery.start_soon(echo)
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            await client.send_all(b"ping" * 8)
            await client.receive_some(4096)
            samples.append(time.perf_counter() - started)
        await client.aclose()
    await server.aclose()
    return samples


async def rpc_round_trips() -> list[float]:
    samples = []
    async with trio.open_nursery() as nursery:
        # The per-peer rate limiter would (rightly) throttle this loop; the bench measures the call path.
        limits = Limits(requests_per_second=1e9, request_burst=10**9)
        server = Host(Identity.generate(), TcpNetwork(), limits=limits)
        client = Host(Identity.generate(), TcpNetwork(), limits=limits)
        await nursery.start(server.run)
        await nursery.start(client.run)

        async def echo(ctx: CallContext, params: dict) -> dict:
            return params

        server.router.unary("echo", echo, inline=True)
        conn = await client.connect(server.listen_address, expected=server.peer_id)
        for _ in range(200):
            await conn.call("echo", {"p": b"ping"})
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            await conn.call("echo", {"p": b"ping"})
            samples.append(time.perf_counter() - started)
        nursery.cancel_scope.cancel()
    return samples


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _with_cpu(fn: Callable[[], Awaitable[float]]) -> tuple[float, float]:
    """(MB/s, CPU milliseconds per MiB moved, both threads of this process together)."""
    started = _cpu_s()
    rate = trio.run(fn)
    return rate, (_cpu_s() - started) * 1000 / (TOTAL_BYTES / (1 << 20))


def run() -> dict:
    raw, raw_cpu = _with_cpu(raw_throughput)
    noise, noise_cpu = _with_cpu(noise_throughput)
    aead = aead_rate()
    aead_cpu = 2 * (1 << 20) / (aead * 1e6) * 1000  # sealing plus opening one MiB
    raw_rtt = statistics.median(trio.run(raw_ping_pong)) * 1e6
    rpc_rtt = statistics.median(trio.run(rpc_round_trips)) * 1e6
    figures = {
        "raw_tcp_MBps": round(raw, 1),
        "noise_MBps": round(noise, 1),
        "throughput_ratio": round(noise / raw, 3),
        "aead_one_core_MBps": round(aead, 1),
        "raw_cpu_ms_per_MiB": round(raw_cpu, 2),
        "noise_cpu_ms_per_MiB": round(noise_cpu, 2),
        "aead_cpu_ms_per_MiB": round(aead_cpu, 2),
        "throughput_ceiling_ratio": round(aead / raw, 3),
        "raw_ping_pong_p50_us": round(raw_rtt, 1),
        "rpc_p50_us": round(rpc_rtt, 1),
        "rpc_over_raw_p50": round(rpc_rtt / raw_rtt, 3),
    }
    print("transport throughput, one loopback connection, both ends in one process:")
    print(f"  raw trio TCP {raw:8.1f} MB/s   Noise transport {noise:8.1f} MB/s", end="")
    print(f"   ratio {noise / raw:.2f}x (target >= 0.45x)")
    print(f"  ceiling: pynacl ChaCha20-Poly1305 on one core {aead:8.1f} MB/s = {aead / raw:.2f}x raw TCP")
    print(f"  CPU per MiB: raw {raw_cpu:.2f} ms, Noise {noise_cpu:.2f} ms, of which sealing + opening alone")
    print(f"  would take {aead_cpu:.2f} ms: the rest is framing, copies and thread hand-offs")
    print("RPC round trip on a warm connection:")
    print(f"  raw TCP ping-pong p50 {raw_rtt:7.1f} us   RPC p50 {rpc_rtt:7.1f} us", end="")
    print(f"   ratio {rpc_rtt / raw_rtt:.2f}x (target <= 2x)")
    return figures


if __name__ == "__main__":
    run()
