"""Routing-table upkeep: ping-before-evict (only an oldest contact not heard from lately, one ping
per oldest contact however many strangers knock) and bucket refresh (one own-id lookup for the
buckets inside the k closest)."""

from __future__ import annotations

import os

import trio
import trio.testing

from cocoon_p2p.dht import Contact, Dht, DhtConfig
from cocoon_p2p.identity import Identity, PeerId
from cocoon_p2p.net import SystemClock, TcpNetwork
from cocoon_p2p.rpc import Host


def _far_id(own: PeerId) -> PeerId:
    """A random id in the bucket farthest from ``own`` (top bit differs)."""
    raw = bytearray(os.urandom(32))
    raw[0] = (raw[0] & 0x7F) | (~own.raw[0] & 0x80)
    return PeerId(bytes(raw))


async def test_strangers_landing_in_a_full_bucket_share_one_ping() -> None:
    host = Host(Identity.generate(), TcpNetwork())
    dht = Dht(host, SystemClock(), config=DhtConfig(k=4, evict_ping_after=0.0))
    pinged: list[PeerId] = []
    answer = trio.Event()

    async def slow_ping(contact: Contact) -> bool:
        pinged.append(contact.peer_id)
        await answer.wait()
        return True

    dht.ping = slow_ping  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(dht.run)
        first = [Contact(_far_id(host.peer_id), f"127.0.0.1:{9000 + i}") for i in range(4)]
        for contact in first:
            dht._saw(contact)
        for i in range(50):
            dht._saw(Contact(_far_id(host.peer_id), f"127.0.0.1:{9100 + i}"))
        await trio.testing.wait_all_tasks_blocked()
        assert pinged == [first[0].peer_id]
        answer.set()
        await trio.testing.wait_all_tasks_blocked()
        # The oldest answered, so it stays; a later stranger may ping the next oldest.
        assert first[0].peer_id in dht.table
        dht._saw(Contact(_far_id(host.peer_id), "127.0.0.1:9999"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(pinged) == 2 and pinged[1] == first[1].peer_id
        nursery.cancel_scope.cancel()


async def test_a_recently_seen_oldest_contact_is_not_pinged_and_the_stranger_waits() -> None:
    host = Host(Identity.generate(), TcpNetwork())
    dht = Dht(host, SystemClock(), config=DhtConfig(k=4, evict_ping_after=60.0))
    pinged: list[PeerId] = []

    async def ping(contact: Contact) -> bool:
        pinged.append(contact.peer_id)
        return False

    dht.ping = ping  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(dht.run)
        now = trio.current_time()
        first = [Contact(_far_id(host.peer_id), f"127.0.0.1:{9000 + i}") for i in range(4)]
        for i, contact in enumerate(first):
            dht.table.add(contact, now - 59.0 + i)  # all heard from within the last minute
        stranger = Contact(_far_id(host.peer_id), "127.0.0.1:9100")
        dht._saw(stranger)
        await trio.testing.wait_all_tasks_blocked()
        assert pinged == []
        assert stranger.peer_id not in dht.table
        assert stranger.peer_id.raw in dht.table.bucket_of(stranger.peer_id).replacements
        # A failed query to a member hands its slot to the waiting stranger.
        dht.table.record_failure(first[2].peer_id, trio.current_time())
        assert stranger.peer_id in dht.table and first[2].peer_id not in dht.table
        # Once the oldest has been silent past the threshold, the next stranger questions it.
        dht.table.get(first[0].peer_id).last_seen = now - 61.0  # type: ignore[union-attr]
        dht._saw(Contact(_far_id(host.peer_id), "127.0.0.1:9101"))
        await trio.testing.wait_all_tasks_blocked()
        assert pinged == [first[0].peer_id]
        assert first[0].peer_id not in dht.table  # it did not answer
        nursery.cancel_scope.cancel()


async def test_one_own_id_lookup_refreshes_every_bucket_inside_the_k_closest() -> None:
    host = Host(Identity.generate(), TcpNetwork())
    dht = Dht(host, SystemClock(), config=DhtConfig(k=4))
    own = host.peer_id.as_int
    for i, distance in enumerate([(1 << 200) + 1, (1 << 201) + 1, (1 << 202) + 1, (1 << 250) + 5]):
        peer = PeerId((own ^ distance).to_bytes(32, "big"))
        dht.table.add(Contact(peer, f"127.0.0.1:{9000 + i}"), 0.0)
    targets: list[bytes] = []

    async def record_lookup(target: bytes) -> None:
        targets.append(target)

    dht.lookup_nodes = record_lookup  # type: ignore[method-assign,assignment]
    await dht.refresh_stale_buckets()
    # Buckets 200..255 were all stale: 200..249 lie inside the 4th closest (bucket 250), so
    # one lookup of our own id covers them; 250..255 get a random-id lookup each.
    assert targets[0] == host.peer_id.raw
    assert sorted((int.from_bytes(t, "big") ^ own).bit_length() - 1 for t in targets[1:]) == list(range(250, 256))
    assert all(dht.table.buckets[i].last_changed > 0 for i in range(200, 256))
