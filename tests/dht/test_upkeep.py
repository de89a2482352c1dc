"""Routing-table upkeep: ping-before-evict (only an oldest contact not heard from lately, one ping
per oldest contact however many strangers knock) and bucket refresh (one own-id lookup for the
buckets inside the k closest; a bucket a lookup covered needs none)."""

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


def test_a_lookup_refreshes_its_bucket_and_every_bucket_nearer_than_its_kth_closest() -> None:
    import random

    from cocoon_p2p.dht.routing import RoutingTable

    rng = random.Random(7)
    own = PeerId(rng.randbytes(32))
    for _ in range(50):
        table = RoutingTable(own, k=4)
        table.add(Contact(PeerId((own.as_int ^ 1).to_bytes(32, "big")), "127.0.0.1:9000"), 0.0)  # bucket 0
        d = rng.randrange(1, 1 << 9)
        target = (own.as_int ^ d).to_bytes(32, "big")
        kth = rng.randrange(1, 1 << 10)
        table.mark_looked_up(target, kth, 5.0)
        t = d.bit_length() - 1
        for i in range(12):
            # Brute force: bucket i is covered when every id in it is nearer the target than kth.
            covered = i == t or max(y ^ d for y in range(1 << i, 1 << (i + 1))) < kth
            bucket = table.buckets.peek(i)
            assert (bucket is not None and bucket.last_changed == 5.0) == covered, (d, kth, i)
    # Without a k-th distance (too few answered), only the target's own bucket counts.
    table = RoutingTable(own, k=4)
    table.add(Contact(PeerId((own.as_int ^ 1).to_bytes(32, "big")), "127.0.0.1:9000"), 0.0)
    table.mark_looked_up((own.as_int ^ (1 << 200) ^ 5).to_bytes(32, "big"), None, 5.0)
    assert [i for i in table.buckets.made_indices() if table.buckets[i].last_changed == 5.0] == [200]


async def test_refresh_skips_buckets_that_a_lookup_covered() -> None:
    host = Host(Identity.generate(), TcpNetwork())
    dht = Dht(host, SystemClock(), config=DhtConfig(k=4))
    own = host.peer_id.as_int
    for i, distance in enumerate([(1 << 200) + 1, (1 << 201) + 1, (1 << 202) + 1, (1 << 250) + 5]):
        peer = PeerId((own ^ distance).to_bytes(32, "big"))
        dht.table.add(Contact(peer, f"127.0.0.1:{9000 + i}"), 0.0)
    # A lookup into bucket 253 a moment ago (a user's, say) refreshed it.
    dht.table.mark_looked_up((own ^ (1 << 253) ^ 99).to_bytes(32, "big"), None, trio.current_time())
    targets: list[bytes] = []

    async def lookup_finding_everyone(target: bytes) -> None:
        targets.append(target)
        if target != host.peer_id.raw:
            # As in a network smaller than k around the target: its k-th closest is farther
            # than every id, so the lookup covered every bucket.
            dht.table.mark_looked_up(target, 1 << 256, trio.current_time())

    dht.lookup_nodes = lookup_finding_everyone  # type: ignore[method-assign,assignment]
    await dht.refresh_stale_buckets()
    # Own id for 200..249, then farthest first: the bucket-255 lookup covers 250..254 as well.
    assert targets[0] == host.peer_id.raw
    assert [(int.from_bytes(t, "big") ^ own).bit_length() - 1 for t in targets[1:]] == [255]
    assert all(dht.table.buckets[i].last_changed > 0 for i in range(200, 256))


async def test_a_record_published_right_after_a_lookup_of_its_key_goes_to_the_peers_it_found() -> None:
    from tests.dht.helpers import dht_network

    async with dht_network(8, DhtConfig(k=4)) as peers:
        dht = peers[-1].dht
        found = await dht.lookup_nodes(dht.host.peer_id.raw)  # as bootstrap's own-id lookup does
        sent = dht.rpcs_sent
        accepted = await dht.publish_self()
        # Only the stores went out: no second lookup of our own id.
        assert dht.rpcs_sent - sent == len(found.closest) == 4
        assert accepted == 4
        holders = {p.host.peer_id for p in peers[:-1] if p.dht.store.get(dht.host.peer_id.raw, dht.clock.now())}
        assert holders == {c.peer_id for c in found.closest}
        # Once that lookup is older than half a minute, publishing looks the key up again.
        when, closest = dht._recent[dht.host.peer_id.raw]
        dht._recent[dht.host.peer_id.raw] = (when - 31.0, closest)
        sent = dht.rpcs_sent
        await dht.publish_self()
        assert dht.rpcs_sent - sent > 4
