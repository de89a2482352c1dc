"""Gossip behaviour on small loopback networks: replays, validators, slow peers, leaving."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio

from cocoon_p2p.gossip import RPC_METHOD, GossipMessage, discovery
from cocoon_p2p.identity import Identity
from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.rpc import CallContext, Host

from .helpers import FAST, gossip_network, mesh_ready, settle, wait_until

TOPIC = "rfq/small"


def drain(channel: trio.MemoryReceiveChannel[GossipMessage]) -> list[GossipMessage]:
    out = []
    while True:
        try:
            out.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


async def test_a_replay_after_the_seen_cache_forgot_it_is_rejected_as_stale() -> None:
    config = dataclasses.replace(FAST, seen_ttl=3.0, max_clock_skew=0.5)  # messages live 2 s
    async with gossip_network(4, config) as peers:
        a, b = peers[0], peers[1]
        channels = [p.gossip.subscribe(TOPIC) for p in peers]
        await wait_until(lambda: mesh_ready(peers, TOPIC, 2))
        sent: list[dict[str, Any]] = []
        a.gossip.on_outbound.append(lambda dest, batch: sent.extend(batch.get("msgs", ())))
        msg_id = await a.gossip.publish(TOPIC, b"once only")
        await settle(peers)
        assert [m.msg_id for m in drain(channels[1])] == [msg_id]

        await wait_until(lambda: msg_id not in b.gossip.seen)
        async with trio.open_nursery() as nursery:
            replayer = Host(Identity.generate(), TcpNetwork())
            await nursery.start(replayer.run)
            conn = await replayer.connect(b.host.listen_address, expected=b.peer_id)
            await conn.call(RPC_METHOD, {"msgs": [sent[0]]})
            nursery.cancel_scope.cancel()
        assert drain(channels[1]) == []
        assert b.gossip.metrics.get("invalid.stale", TOPIC) == 1


async def test_topic_validators_run_before_delivery_and_forwarding() -> None:
    async with gossip_network(5) as peers:
        publisher, checkers = peers[0], peers[1:]
        channels = [p.gossip.subscribe(TOPIC) for p in checkers]
        publisher.gossip.subscribe(TOPIC)
        seen_by_validator: list[bytes] = []

        def no_bad(msg: GossipMessage) -> bool:
            seen_by_validator.append(msg.data)
            if msg.data == b"explode":
                raise ValueError("validators may raise")
            return not msg.data.startswith(b"bad")

        for p in checkers:
            p.gossip.add_validator(TOPIC, no_bad)
        await wait_until(lambda: mesh_ready(peers, TOPIC, 3))

        await publisher.gossip.publish(TOPIC, b"bad offer")
        await publisher.gossip.publish(TOPIC, b"explode")
        await settle(peers)
        assert all(drain(ch) == [] for ch in channels)
        rejected = sum(p.gossip.metrics.get("invalid.validator", TOPIC) for p in checkers)
        assert rejected >= 2 and rejected == len(seen_by_validator), "nothing invalid was forwarded onwards"
        for p in checkers:
            if p.gossip.metrics.get("invalid.validator", TOPIC):
                assert p.gossip.scores.score(publisher.peer_id) < 0
                assert publisher.peer_id not in p.gossip.mesh_peers(TOPIC)

        good = await publisher.gossip.publish(TOPIC, b"good offer")
        await settle(peers)
        assert all([m.msg_id for m in drain(ch)] == [good] for ch in channels)


async def test_a_stalled_peer_fills_only_its_own_queue() -> None:
    config = dataclasses.replace(FAST, queue_size=4, rpc_timeout=600.0)
    async with gossip_network(4, config) as peers:
        a = peers[0]
        channels = [p.gossip.subscribe(TOPIC) for p in peers[1:]]
        a.gossip.subscribe(TOPIC)
        await wait_until(lambda: mesh_ready(peers, TOPIC, 2))
        async with trio.open_nursery() as nursery:
            stalled = Host(Identity.generate(), TcpNetwork())
            await nursery.start(stalled.run)

            async def never_answer(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
                await trio.sleep_forever()
                raise AssertionError("unreachable")

            stalled.router.unary(RPC_METHOD, never_answer)
            conn = await stalled.connect(a.host.listen_address, expected=a.peer_id)
            await conn.call(RPC_METHOD, {"hello": True, "subs": [[TOPIC, True]], "graft": [TOPIC]})
            assert stalled.peer_id in a.gossip.mesh_peers(TOPIC)

            beats = a.gossip.heartbeats
            for i in range(12):
                msg_id = await a.gossip.publish(TOPIC, b"m%d" % i)
                for ch in channels:  # the healthy peers keep up, one message at a time
                    with trio.fail_after(30):
                        assert (await ch.receive()).msg_id == msg_id
            await wait_until(lambda: a.gossip.heartbeats >= beats + 3)  # and so does the heartbeat
            stuck = a.gossip.peers[stalled.peer_id]
            assert stuck.pending <= config.queue_size + 1
            assert a.gossip.metrics.get("queue_dropped") >= 12 - config.queue_size - 1
            nursery.cancel_scope.cancel()


async def test_unsubscribing_leaves_the_meshes_and_stops_delivery() -> None:
    async with gossip_network(5) as peers:
        leaver = peers[-1]
        channels = [p.gossip.subscribe(TOPIC) for p in peers]
        await wait_until(lambda: mesh_ready(peers, TOPIC, 3))
        leaver.gossip.unsubscribe(TOPIC)
        await settle(peers)

        def out_of_every_mesh() -> bool:
            return all(leaver.peer_id not in p.gossip.mesh_peers(TOPIC) for p in peers[:-1])

        await wait_until(out_of_every_mesh)
        for _ in range(3):  # a peer that still believes the DHT and grafts the leaver is pruned right back
            for p in peers[:-1]:
                p.gossip.heartbeat()
            await settle(peers)
        assert out_of_every_mesh()
        assert TOPIC not in leaver.gossip.mesh and not leaver.gossip.mesh_peers(TOPIC)
        msg_id = await peers[0].gossip.publish(TOPIC, b"after the leave")
        await settle(peers)
        assert all([m.msg_id for m in drain(ch)] == [msg_id] for ch in channels[:-1])
        with pytest.raises(trio.EndOfChannel):
            channels[-1].receive_nowait()  # unsubscribing closed the application's channel
        assert leaver.gossip.metrics.get("delivered") == 0


async def test_closing_every_channel_unsubscribes() -> None:
    async with gossip_network(3) as peers:
        channels = [p.gossip.subscribe(TOPIC) for p in peers]
        await wait_until(lambda: mesh_ready(peers, TOPIC, 2))
        await channels[2].aclose()
        await peers[0].gossip.publish(TOPIC, b"anyone there?")
        await wait_until(lambda: TOPIC not in peers[2].gossip.mesh)
        await wait_until(lambda: peers[2].peer_id not in peers[0].gossip.known_subscribers(TOPIC))


async def test_graft_from_a_non_subscriber_topic_is_pruned_and_subscriptions_are_learned() -> None:
    async with gossip_network(2) as peers:
        a, b = peers
        a.gossip.subscribe(TOPIC)
        async with trio.open_nursery() as nursery:
            outsider = Host(Identity.generate(), TcpNetwork())
            received: list[dict[str, Any]] = []

            async def record(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
                received.append(params)
                return {}

            outsider.router.unary(RPC_METHOD, record)
            await nursery.start(outsider.run)
            conn = await outsider.connect(a.host.listen_address, expected=a.peer_id)
            await conn.call(RPC_METHOD, {"hello": True, "subs": [[TOPIC, True]], "graft": ["rfq/nobody-here"]})
            await wait_until(lambda: any(r.get("prune") for r in received))
            hello = next(r for r in received if r.get("hello"))
            assert hello["subs"] == [[TOPIC, True]], "a's answer carries its own subscriptions"
            assert ["rfq/nobody-here", 0.0] in [p for r in received for p in r.get("prune", [])]
            assert a.gossip.known_subscribers(TOPIC) == {outsider.peer_id}
            nursery.cancel_scope.cancel()
        assert b.gossip.metrics.get("delivered") == 0


async def test_subscribers_announce_themselves_in_the_dht() -> None:
    async with gossip_network(8) as peers:
        subscribers = peers[:3]
        channels = [p.gossip.subscribe(TOPIC) for p in subscribers]
        # The announcement is signed by each subscriber and stored on the k closest peers to the topic key.
        found: set = set()

        async def lookup() -> None:
            found.clear()
            for sub in await discovery.find_subscribers(peers[-1].dht, TOPIC):
                found.add((sub.peer_id, sub.address))

        expected = {(p.peer_id, p.host.listen_address) for p in subscribers}
        with trio.fail_after(60):
            while found != expected:
                await lookup()
                await trio.sleep(0.1)
        # A non-subscriber publishing finds them the same way and reaches them through fanout.
        msg_id = await peers[-1].gossip.publish(TOPIC, b"through fanout")
        await settle(peers)
        assert peers[-1].gossip.fanout[TOPIC] <= {p.peer_id for p in subscribers}
        assert all([m.msg_id for m in drain(ch)] == [msg_id] for ch in channels)


async def recording_host(nursery: trio.Nursery, inbox: list[tuple[Host, dict[str, Any]]]) -> Host:
    """A bare host that speaks just enough gossip to record what it is sent."""
    host = Host(Identity.generate(), TcpNetwork())

    async def record(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        inbox.append((host, params))
        return {}

    host.router.unary(RPC_METHOD, record)
    await nursery.start(host.run)
    return host


async def test_an_oversubscribed_mesh_prunes_with_peer_exchange() -> None:
    config = dataclasses.replace(FAST, d=2, d_lo=1, d_hi=2, d_score=0)
    async with gossip_network(1, config) as (a,):
        a.gossip.subscribe(TOPIC)
        inbox: list[tuple[Host, dict[str, Any]]] = []
        async with trio.open_nursery() as nursery:
            joiners = [await recording_host(nursery, inbox) for _ in range(5)]
            for host in joiners:
                _, port = host.listen_address.rsplit(":", 1)
                conn = await host.connect(a.host.listen_address, expected=a.peer_id)
                await conn.call(
                    RPC_METHOD, {"hello": True, "port": int(port), "subs": [[TOPIC, True]], "graft": [TOPIC]}
                )

            def prunes() -> list[tuple[Host, list[Any]]]:
                return [(h, p) for h, batch in inbox for p in batch.get("prune", []) if p[0] == TOPIC]

            await wait_until(lambda: len(prunes()) >= 3)
            assert len(a.gossip.mesh_peers(TOPIC)) == config.d
            addresses = {h.peer_id.raw: h.listen_address for h in joiners}
            for pruned, entry in prunes():
                assert entry[1] == config.prune_backoff
                offered = entry[2]
                assert offered and len(offered) <= config.prune_peers
                for peer_raw, address in offered:
                    assert peer_raw != pruned.peer_id.raw, "a peer is never offered itself"
                    assert addresses[peer_raw] == address
            nursery.cancel_scope.cancel()


async def test_peer_exchange_is_taken_from_good_peers_only() -> None:
    async with gossip_network(3) as peers:
        a, b, c = peers
        a.gossip.subscribe(TOPIC)
        hint = [[b.peer_id.raw, b.host.listen_address]]
        async with trio.open_nursery() as nursery:
            friend = await recording_host(nursery, [])
            conn = await friend.connect(a.host.listen_address, expected=a.peer_id)
            await conn.call(RPC_METHOD, {"hello": True, "subs": [[TOPIC, True]], "prune": [[TOPIC, 1, hint]]})
            assert b.peer_id in a.gossip.known_subscribers(TOPIC)

            a.gossip.scores.invalid(friend.peer_id)  # now below the mesh threshold: its hints are ignored
            hint = [[c.peer_id.raw, c.host.listen_address]]
            await conn.call(RPC_METHOD, {"prune": [[TOPIC, 1, hint]]})
            assert c.peer_id not in a.gossip.known_subscribers(TOPIC)
            nursery.cancel_scope.cancel()
