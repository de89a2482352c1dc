"""A 64-peer DHT over real loopback TCP in one process."""

from __future__ import annotations

import random

import pytest
import trio

from cocoon_p2p.dht import PROVIDER_RECORD, Record, sign_record
from cocoon_p2p.errors import RemoteError
from cocoon_p2p.identity import Identity
from tests.dht.helpers import DhtPeer, dht_network

pytestmark = pytest.mark.slow


async def _lookup_all(searchers: list[DhtPeer], targets: list[DhtPeer]) -> tuple[int, int]:
    found = total = 0
    limiter = trio.CapacityLimiter(16)

    async def one(searcher: DhtPeer, target: DhtPeer) -> None:
        nonlocal found, total
        async with limiter:
            result = await searcher.dht.get_records(target.host.peer_id.raw, enough=1)
        total += 1
        if any(r.publisher_id == target.host.peer_id for r in result.records):
            found += 1

    async with trio.open_nursery() as nursery:
        for searcher in searchers:
            for target in targets:
                if target is not searcher:
                    nursery.start_soon(one, searcher, target)
    return found, total


async def test_every_peer_finds_every_record_and_survives_losing_a_third() -> None:
    async with dht_network(64) as peers:
        for peer in peers:
            assert await peer.dht.publish_self() > 0
        found, total = await _lookup_all(peers, peers)
        assert found == total == 64 * 63

        rng = random.Random(3)
        stopped = rng.sample(peers[1:], 21)
        for peer in stopped:
            peer.stop()
        await trio.sleep(0.2)
        alive = [p for p in peers if p not in stopped]
        found, total = await _lookup_all(rng.sample(alive, 12), alive)
        assert found == total


async def test_record_of_a_stopped_peer_expires_and_bad_records_are_refused_everywhere() -> None:
    async with dht_network(64) as peers:
        publisher = peers[-1]
        clock = publisher.dht.clock
        key = b"\x42" * 32
        short = sign_record(
            publisher.host.identity, PROVIDER_RECORD, key, b"offer", seq=1, expires=int(clock.now()) + 2
        )
        assert await publisher.dht.put_record(short) > 0
        assert (await peers[0].dht.get_records(key)).records
        publisher.stop()
        await trio.sleep(3.1)
        assert not (await peers[0].dht.get_records(key)).records
        assert all(not p.dht.store.get(key, clock.now()) for p in peers[:-1])

        forger = Identity.generate()
        good = sign_record(forger, PROVIDER_RECORD, key, b"v2", seq=10, expires=int(clock.now()) + 600)
        bad_sig = Record(**{**good.__dict__, "value": b"tampered"})
        stale = sign_record(forger, PROVIDER_RECORD, key, b"v1", seq=9, expires=int(clock.now()) + 600)
        huge = sign_record(forger, PROVIDER_RECORD, key, b"x" * 5000, seq=11, expires=int(clock.now()) + 600)
        too_late = sign_record(forger, PROVIDER_RECORD, key, b"v", seq=12, expires=int(clock.now()) + 49 * 3600)
        caller = peers[0]
        for target in peers[1:-1]:
            conn = await caller.host.connect(target.host.listen_address, expected=target.host.peer_id)
            assert await conn.call("dht.store", {"record": good.to_wire()}) == {}
            for record in (bad_sig, stale, huge, too_late):
                with pytest.raises(RemoteError) as info:
                    await conn.call("dht.store", {"record": record.to_wire()})
                assert info.value.code == "record_rejected"
            held = target.dht.store.get(key, clock.now())
            assert [(r.seq, r.value) for r in held] == [(10, b"v2")]
