"""Ping-before-evict: one ping per oldest contact, however many strangers knock."""

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
    dht = Dht(host, SystemClock(), config=DhtConfig(k=4))
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
