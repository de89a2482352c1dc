"""RPC over real Noise on real loopback TCP."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest
import trio
import trio.testing

from cocoon_p2p.errors import ConnectionClosed, PeerIdMismatch, RemoteError
from cocoon_p2p.identity import Identity
from cocoon_p2p.rpc import CallContext, Stream
from cocoon_p2p.wire.limits import Limits
from tests.conftest import running_hosts


async def test_unary_call_identifies_caller_from_the_noise_session() -> None:
    async with running_hosts(2) as (a, b):

        async def whoami(ctx: CallContext, params: dict) -> dict:
            return {"peer": ctx.peer_id.raw, "echo": params["x"]}

        b.router.unary("whoami", whoami)
        conn = await a.connect(b.listen_address, expected=b.peer_id)
        reply = await conn.call("whoami", {"x": 7})
        assert reply == {"peer": a.peer_id.raw, "echo": 7}
        assert conn.peer_id == b.peer_id


async def test_both_sides_can_call_over_one_connection() -> None:
    async with running_hosts(2) as (a, b):

        async def ping(ctx: CallContext, params: dict) -> dict:
            return {"pong": True}

        a.router.unary("ping", ping)
        b.router.unary("ping", ping)
        conn_ab = await a.connect(b.listen_address, expected=b.peer_id)
        await conn_ab.call("ping", {})
        with trio.fail_after(5):
            while b.connection_for(a.peer_id) is None:
                await trio.sleep(0.01)
        assert await b.connection_for(a.peer_id).call("ping", {}) == {"pong": True}


async def test_wrong_expected_peer_id_fails_with_typed_error() -> None:
    async with running_hosts(2) as (a, b):
        with pytest.raises(PeerIdMismatch):
            await a.connect(b.listen_address, expected=Identity.generate().peer_id)


async def test_unknown_method_and_handler_errors_are_typed() -> None:
    async with running_hosts(2) as (a, b):

        async def refuse(ctx: CallContext, params: dict) -> dict:
            raise RemoteError("over_capacity", "busy")

        async def crash(ctx: CallContext, params: dict) -> dict:
            raise ValueError("bug")

        b.router.unary("refuse", refuse)
        b.router.unary("crash", crash)
        conn = await a.connect(b.listen_address)
        with pytest.raises(RemoteError) as info:
            await conn.call("nope", {})
        assert info.value.code == "unknown_method"
        with pytest.raises(RemoteError) as info:
            await conn.call("refuse", {})
        assert info.value.code == "over_capacity"
        with pytest.raises(RemoteError) as info:
            await conn.call("crash", {})
        assert info.value.code == "internal"
        # The connection survives handler errors.
        assert not conn.is_closed


async def test_thousand_concurrent_calls_over_one_connection() -> None:
    async with running_hosts(2) as (a, b):

        async def slow_echo(ctx: CallContext, params: dict) -> dict:
            await trio.sleep(0.01)
            return {"n": params["n"]}

        b.router.unary("echo", slow_echo)
        conn = await a.connect(b.listen_address)
        results: dict[int, int] = {}

        async def one(n: int) -> None:
            results[n] = (await conn.call("echo", {"n": n}))["n"]

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for n in range(1000):
                    nursery.start_soon(one, n)
        assert results == {n: n for n in range(1000)}
        assert len(a.connections) == 1


async def test_cancelling_a_call_stops_the_remote_handler() -> None:
    async with running_hosts(2) as (a, b):
        started, stopped = trio.Event(), trio.Event()

        async def forever(ctx: CallContext, params: dict) -> dict:
            started.set()
            try:
                await trio.sleep_forever()
            finally:
                stopped.set()

        b.router.unary("forever", forever)
        conn = await a.connect(b.listen_address)
        with trio.move_on_after(10) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.call, "forever", {})
                await started.wait()
                nursery.cancel_scope.cancel()
            await stopped.wait()
        assert not scope.cancelled_caught, "the remote handler kept running after the caller cancelled"


async def test_timeout_propagates_as_cancel() -> None:
    async with running_hosts(2) as (a, b):
        stopped = trio.Event()

        async def forever(ctx: CallContext, params: dict) -> dict:
            try:
                await trio.sleep_forever()
            finally:
                stopped.set()

        b.router.unary("forever", forever)
        conn = await a.connect(b.listen_address)
        with pytest.raises(trio.TooSlowError):
            await conn.call("forever", {}, timeout=0.2)
        with trio.fail_after(10):
            await stopped.wait()


async def test_a_request_sent_without_waiting_reports_back_through_its_callback() -> None:
    async with running_hosts(2) as (a, b):

        async def echo(ctx: CallContext, params: dict) -> dict:
            return {"n": params["n"]}

        async def refuse(ctx: CallContext, params: dict) -> dict:
            raise RemoteError("over_capacity", "busy")

        b.router.unary("echo", echo)
        b.router.unary("refuse", refuse)
        conn = await a.connect(b.listen_address)
        outcomes: dict[int, object] = {}
        done = trio.Event()

        def record(n: int) -> Callable[[object], None]:
            def on_reply(outcome: object) -> None:
                outcomes[n] = outcome
                if len(outcomes) == 3:
                    done.set()

            return on_reply

        assert conn.request_nowait("echo", {"n": 1}, record(1)) is not None
        assert conn.request_nowait("echo", {"n": 2}, record(2)) is not None
        assert conn.request_nowait("refuse", {}, record(3)) is not None
        with trio.fail_after(10):
            await done.wait()
        assert outcomes[1] == {"n": 1} and outcomes[2] == {"n": 2}
        assert isinstance(outcomes[3], RemoteError) and outcomes[3].code == "over_capacity"
        assert conn.is_idle  # every slot given back


async def test_an_abandoned_request_never_calls_back_and_stops_the_remote_handler() -> None:
    async with running_hosts(2) as (a, b):
        started, stopped = trio.Event(), trio.Event()

        async def forever(ctx: CallContext, params: dict) -> dict:
            started.set()
            try:
                await trio.sleep_forever()
            finally:
                stopped.set()

        b.router.unary("forever", forever)
        conn = await a.connect(b.listen_address)
        called: list[object] = []
        call_id = conn.request_nowait("forever", {}, called.append)
        assert call_id is not None
        with trio.fail_after(10):
            await started.wait()
            conn.abandon(call_id)
            await stopped.wait()
        assert called == [] and conn.is_idle


async def test_requests_without_waiting_fail_with_the_connection_and_decline_when_slots_run_out() -> None:
    limits = Limits(max_streams=2)
    async with running_hosts(2, limits=limits) as (a, b):

        async def forever(ctx: CallContext, params: dict) -> dict:
            await trio.sleep_forever()
            return {}

        b.router.unary("forever", forever)
        conn = await a.connect(b.listen_address)
        outcomes: list[object] = []
        assert conn.request_nowait("forever", {}, outcomes.append) is not None
        assert conn.request_nowait("forever", {}, outcomes.append) is not None
        assert conn.request_nowait("forever", {}, outcomes.append) is None  # no slot: use call()
        await conn.aclose()
        assert len(outcomes) == 2 and all(isinstance(o, ConnectionClosed) for o in outcomes)
        with pytest.raises(ConnectionClosed):
            conn.request_nowait("forever", {}, outcomes.append)


async def test_bidirectional_stream() -> None:
    """Lock-step ping-pong: the first item travels right behind ``sopen``, often in the same read,
    so the listener must have the stream registered before its handler task first runs."""
    async with running_hosts(2) as (a, b):

        async def doubler(ctx: CallContext, params: dict, stream: Stream) -> None:
            async for item in stream:
                await stream.send({"v": item["v"] * 2})

        b.router.stream("double", doubler)
        conn = await a.connect(b.listen_address)
        async with conn.open_stream("double", {}) as stream:
            for v in range(100):
                await stream.send({"v": v})
                assert (await stream.receive())["v"] == 2 * v
            await stream.end()
            with pytest.raises(trio.EndOfChannel):
                await stream.receive()


async def test_sender_is_not_stranded_when_the_handler_returns_early() -> None:
    """The handler stops reading after one item; the opener keeps sending past its window.

    Items for a finished stream are discarded, but their credit must still come back,
    or the opener would wait for credit forever."""
    async with running_hosts(2) as (a, b):

        async def first_only(ctx: CallContext, params: dict, stream: Stream) -> None:
            await stream.receive()

        b.router.stream("first_only", first_only)
        conn = await a.connect(b.listen_address)
        window = a.limits.stream_window
        with trio.fail_after(10):
            async with conn.open_stream("first_only", {}) as stream:
                for v in range(window * 3):
                    await stream.send({"v": v})
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()


async def test_long_stream_to_slow_reader_keeps_memory_bounded() -> None:
    """10,000 frames to a reader that lags: the sender waits on credit, nothing piles up."""
    async with running_hosts(2) as (a, b):
        sent = 0
        payload = b"x" * 4096

        async def firehose(ctx: CallContext, params: dict, stream: Stream) -> None:
            nonlocal sent
            for i in range(10_000):
                await stream.send({"i": i, "b": payload})
                sent += 1

        b.router.stream("firehose", firehose)
        conn = await a.connect(b.listen_address)
        gc.collect()
        tracemalloc.start()
        received = 0
        max_gap = 0
        try:
            async with conn.open_stream("firehose", {}) as stream:
                async for item in stream:
                    assert item["i"] == received
                    received += 1
                    max_gap = max(max_gap, sent - received)
                    if received % 100 == 0:
                        await trio.sleep(0.001)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert received == 10_000
        window = a.limits.stream_window
        # The sender can run ahead by at most one credit window (plus items in transit).
        assert max_gap <= window + 1
        # 10,000 × 4 KiB = 40 MiB would have been buffered without backpressure.
        assert peak < 8 * 1024 * 1024


async def test_dial_to_dead_address_is_connection_closed() -> None:
    async with running_hosts(1) as (a,):
        with pytest.raises(ConnectionClosed):
            await a.connect("127.0.0.1:1")


async def test_idle_connections_close_and_busy_ones_stay_open() -> None:
    """A connection quiet for idle_timeout with nothing in flight is closed by its host; one
    with a stream open stays, however quiet (a half-second timeout keeps the test short)."""
    limits = Limits(idle_timeout=0.5)
    async with running_hosts(3, limits=limits) as (a, b, c):
        gate = trio.Event()

        async def echo(ctx: CallContext, params: dict) -> dict:
            return params

        async def hold(ctx: CallContext, params: dict, stream: Stream) -> None:
            await gate.wait()

        b.router.unary("echo", echo)
        c.router.stream("hold", hold)
        quiet = await a.connect(b.listen_address, expected=b.peer_id)
        busy = await a.connect(c.listen_address, expected=c.peer_id)
        assert await quiet.call("echo", {"x": 1}) == {"x": 1}
        async with busy.open_stream("hold", {}):
            with trio.fail_after(5):
                await quiet.wait_closed()
            await trio.sleep(1.0)
            assert not busy.is_closed
            gate.set()
        assert a.connection_for(b.peer_id) is None
        with trio.fail_after(5):
            await busy.wait_closed()


async def test_inbound_connection_is_announced_pooled_and_forgotten_when_it_closes() -> None:
    # The inbound side runs the connection in the listener's handler task (no nursery of its
    # own); it must still be announced, pooled for calls back, and dropped once closed.
    async with running_hosts(2) as (server, client):

        async def echo(ctx: CallContext, params: dict) -> dict:
            return params

        server.router.unary("echo", echo)
        client.router.unary("echo", echo)
        accepted: list = []
        server.on_connection.append(accepted.append)
        conn = await client.connect(server.listen_address, expected=server.peer_id)
        assert await conn.call("echo", {"x": 1}) == {"x": 1}
        assert len(accepted) == 1 and accepted[0].peer_id == client.peer_id
        back = server.connection_for(client.peer_id)
        assert back is accepted[0] and back in server.connections
        assert await back.call("echo", {"x": 2}) == {"x": 2}
        await conn.aclose()
        with trio.fail_after(10):
            await back.wait_closed()
        await trio.testing.wait_all_tasks_blocked()
        assert server.connection_for(client.peer_id) is None and not server.connections


async def test_a_connection_that_carried_only_brief_calls_closes_after_the_brief_idle_timeout() -> None:
    """Brief calls (the DHT's one-shot queries) leave a connection that closes after
    brief_idle_timeout; one other call, either way, gives it the full idle_timeout."""
    limits = Limits(idle_timeout=3600.0, brief_idle_timeout=0.5)
    async with running_hosts(3, limits=limits) as (a, b, c):

        async def echo(ctx: CallContext, params: dict) -> dict:
            return params

        for host in (a, b, c):
            host.router.unary("query", echo, inline=True, brief=True)
            host.router.unary("echo", echo)
        only_brief = await a.connect(b.listen_address, expected=b.peer_id)
        mixed = await a.connect(c.listen_address, expected=c.peer_id)
        assert await only_brief.call("query", {"x": 1}) == {"x": 1}
        assert await mixed.call("query", {"x": 1}) == {"x": 1}
        assert only_brief.brief and mixed.brief
        # An ordinary call the other way round counts too: both ends leave the brief class.
        back = c.connection_for(a.peer_id)
        assert back is not None and await back.call("echo", {"y": 2}) == {"y": 2}
        assert not mixed.brief and not back.brief
        with trio.fail_after(10):
            await only_brief.wait_closed()
        assert a.connection_for(b.peer_id) is None
        assert a.connection_for(c.peer_id) is mixed and not mixed.is_closed


def test_every_dht_rpc_is_brief() -> None:
    from cocoon_p2p.dht import Dht
    from cocoon_p2p.net import SystemClock, TcpNetwork
    from cocoon_p2p.rpc import Host

    host = Host(Identity.generate(), TcpNetwork())
    Dht(host, SystemClock())
    dht_methods = {m for m in host.router.unary_handlers if m.startswith("dht.")}
    assert dht_methods and dht_methods <= host.router.brief
