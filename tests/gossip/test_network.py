"""Gossip on a 50-peer loopback network: real hosts, real TCP, Noise, DHT discovery.

The limits on waits below only turn a hang into a failure; no assertion is about speed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio

from cocoon_p2p.gossip import RPC_METHOD, GossipMessage, sign_message
from cocoon_p2p.identity import Identity, PeerId
from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.rpc import Host

from .helpers import GossipPeer, gossip_network, mesh_ready, settle, wait_until

TOPIC = "rfq/test-model"
PEERS = 50
SUBSCRIBERS = 45  # the last five peers never subscribe


def drain(channel: trio.MemoryReceiveChannel[GossipMessage]) -> list[GossipMessage]:
    out = []
    while True:
        try:
            out.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


async def subscribe_all(peers: list[GossipPeer]) -> list[trio.MemoryReceiveChannel[GossipMessage]]:
    channels = [p.gossip.subscribe(TOPIC) for p in peers]
    await wait_until(lambda: mesh_ready(peers, TOPIC, peers[0].gossip.config.d_lo), limit=60)
    return channels


def total(peers: list[GossipPeer], name: str) -> int:
    return sum(p.gossip.metrics.get(name, TOPIC) for p in peers)


@pytest.mark.slow
async def test_every_subscriber_gets_each_message_exactly_once_and_forgeries_nowhere() -> None:
    async with gossip_network(PEERS) as peers:
        subs, others = peers[:SUBSCRIBERS], peers[SUBSCRIBERS:]
        traffic: list[tuple[PeerId, PeerId, dict[str, Any]]] = []
        for p in peers:
            p.gossip.on_outbound.append(lambda dest, batch, src=p.peer_id: traffic.append((src, dest, batch)))
        channels = await subscribe_all(subs)

        # One publication from inside the mesh, one from a non-subscriber through fanout peers.
        ids = [await subs[7].gossip.publish(TOPIC, b"from a subscriber")]
        ids.append(await others[0].gossip.publish(TOPIC, b"from outside"))
        await settle(peers)

        delivered = [drain(ch) for ch in channels]
        for got in delivered:
            assert sorted(m.msg_id for m in got) == sorted(ids), "each subscriber gets each message exactly once"
        first = next(m for m in delivered[3] if m.msg_id == ids[0])
        assert first.origin == subs[7].peer_id and first.data == b"from a subscriber" and first.hops >= 1
        assert total(subs, "duplicates") > 0, "the mesh is redundant, and the copies were suppressed"
        assert total(subs, "delivered") == 2 * SUBSCRIBERS
        assert all(p.gossip.metrics.get("delivered") == 0 for p in others)

        # What went over the wire: copies only to subscribers, never the same copy twice to one peer.
        subscriber_ids = {p.peer_id for p in subs}
        copies = Counter()
        for src, dest, batch in traffic:
            for wire in batch.get("msgs", ()):
                assert dest in subscriber_ids
                copies[(src, dest, wire["sig"])] += 1
        assert copies and max(copies.values()) == 1

        # A bounded mesh on every subscriber once a heartbeat has run.
        config = subs[0].gossip.config
        for p in subs:
            p.gossip.heartbeat()
            assert config.d_lo <= len(p.gossip.mesh_peers(TOPIC)) <= config.d_hi

        duplicates_before = [p.gossip.metrics.get("duplicates", TOPIC) for p in subs]
        await inject_bad_messages(peers, subs, genuine=first, traffic=traffic)
        await settle(peers)
        for p, channel, before in zip(subs, channels, duplicates_before, strict=True):
            assert drain(channel) == [], "no forged, oversized or replayed message is delivered"
            m = p.gossip.metrics
            # Exactly one each: the outsider's own copy. Had any peer relayed one, some count would be higher.
            assert m.get("invalid.bad_signature", TOPIC) == 1
            assert m.get("invalid.oversized") == 1
            assert m.get("duplicates", TOPIC) == before + 1, "the replay is recognised as a duplicate"


async def inject_bad_messages(
    peers: list[GossipPeer],
    targets: list[GossipPeer],
    *,
    genuine: GossipMessage,
    traffic: list[tuple[PeerId, PeerId, dict[str, Any]]],
) -> None:
    """An outsider sends every target a forged copy, an oversized message and a verbatim replay."""
    genuine_wire = next(w for _, _, batch in traffic for w in batch.get("msgs", ()) if w["key"] == genuine.origin_key)
    forged = {**genuine_wire, "data": b"pay the attacker"}
    mallory = Identity.generate()
    limit = peers[0].host.limits.max_gossip
    now_ms = int(peers[0].gossip.clock.now() * 1000)
    oversized = sign_message(mallory, TOPIC, b"x" * (limit + 1), seqno=1, ts_ms=now_ms)
    async with trio.open_nursery() as nursery:
        outsider = Host(mallory, TcpNetwork())
        await nursery.start(outsider.run)
        for target in targets:
            conn = await outsider.connect(target.host.listen_address, expected=target.peer_id)
            await conn.call(RPC_METHOD, {"msgs": [forged, oversized, genuine_wire]})
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_flooding_peer_is_graylisted_everywhere_and_its_messages_stop() -> None:
    async with gossip_network(PEERS) as peers:
        honest, attacker = peers[:-1], peers[-1]
        channels = await subscribe_all(peers)
        await wait_until(lambda: any(attacker.peer_id in p.gossip.mesh_peers(TOPIC) for p in honest))

        # A flood of well-formed messages with bad signatures, sent straight to every peer.
        now_ms = int(attacker.gossip.clock.now() * 1000)
        junk = [
            {**sign_message(attacker.host.identity, TOPIC, b"junk %d" % i, seqno=i + 1, ts_ms=now_ms), "sig": bytes(64)}
            for i in range(20)
        ]
        for p in honest:
            conn = await attacker.host.connect(p.host.listen_address, expected=p.peer_id)
            await conn.call(RPC_METHOD, {"msgs": junk})
        for p in honest:
            assert p.gossip.scores.graylisted(attacker.peer_id)
            assert attacker.peer_id not in p.gossip.mesh_peers(TOPIC), "graylisted peers leave every mesh"
            assert p.gossip.metrics.get("invalid.bad_signature", TOPIC) >= 4

        # Its validly signed messages no longer travel; honest traffic still reaches every honest peer.
        await attacker.gossip.publish(TOPIC, b"please forward me")
        honest_id = await honest[0].gossip.publish(TOPIC, b"business as usual")
        await settle(peers)
        for p, channel in zip(honest, channels[:-1], strict=True):
            got = drain(channel)
            assert [m.msg_id for m in got] == [honest_id]
            assert p.gossip.metrics.get("delivered", TOPIC) == 1
        assert sum(p.gossip.metrics.get("ignored_graylisted") for p in honest) >= 1
        for p in honest:
            p.gossip.heartbeat()
            assert attacker.peer_id not in p.gossip.mesh_peers(TOPIC)
