"""Hypothesis state machine over the routing table."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cocoon_p2p.dht import Contact, RoutingTable, bucket_index
from cocoon_p2p.identity import PeerId

K = 4  # small k so buckets fill and evictions happen within a short run

ids = st.binary(min_size=32, max_size=32).map(PeerId)
# Ids near the owner land in low buckets; random ids mostly in the top ones.
subnets = st.sampled_from(["127.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1", "::1"])


class RoutingTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.own = PeerId(b"\x55" * 32)
        self.table = RoutingTable(self.own, k=K, per_subnet=2)
        self.known: dict[PeerId, Contact] = {}
        self.now = 0.0

    @rule(peer=ids, host=subnets, port=st.integers(1, 65535))
    def add(self, peer: PeerId, host: str, port: int) -> None:
        self.now += 1
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        oldest = self.table.add(Contact(peer, address), self.now)
        if oldest is not None:
            assert oldest.peer_id in self.table
            assert oldest is next(iter(self.table.bucket_of(peer).contacts.values()))

    @rule()
    def add_self(self) -> None:
        assert self.table.add(Contact(self.own, "127.0.0.1:1"), self.now) is None
        assert self.own not in self.table

    @rule(data=st.data())
    def remove_known(self, data: st.DataObject) -> None:
        contacts = self.table.all_contacts()
        if contacts:
            victim = data.draw(st.sampled_from(contacts))
            self.table.remove(victim.peer_id, self.now)
            assert victim.peer_id not in self.table

    @rule(key=st.binary(min_size=32, max_size=32), count=st.integers(1, 12))
    def closest_is_exact(self, key: bytes, count: int) -> None:
        answer = [c.peer_id for c in self.table.closest(key, count)]
        everyone = [c.peer_id for c in self.table.all_contacts()]
        t = int.from_bytes(key, "big")
        expected = sorted(everyone, key=lambda p: p.as_int ^ t)[:count]
        assert answer == expected

    @rule(data=st.data(), count=st.integers(1, 12))
    def closest_to_own_id_or_a_contact_excluding_it(self, data: st.DataObject, count: int) -> None:
        # The bucket walk has two edge cases: the target is our own id, or a known contact.
        contacts = self.table.all_contacts()
        target = data.draw(st.sampled_from([self.own, *(c.peer_id for c in contacts)]))
        answer = [c.peer_id for c in self.table.closest(target.raw, count, exclude=target)]
        t = target.as_int
        expected = sorted((c.peer_id for c in contacts if c.peer_id != target), key=lambda p: p.as_int ^ t)[:count]
        assert answer == expected

    @invariant()
    def buckets_hold_at_most_k_and_the_right_ids(self) -> None:
        for index, bucket in enumerate(self.table.buckets):
            assert len(bucket.contacts) <= K
            for raw, contact in bucket.contacts.items():
                assert raw == contact.peer_id.raw != self.own.raw
                assert bucket_index(self.own.raw, raw) == index

    @invariant()
    def subnet_limit_holds(self) -> None:
        for bucket in self.table.buckets:
            subnets_seen: dict[str, int] = {}
            for contact in bucket.contacts.values():
                if contact.subnet is not None:
                    subnets_seen[contact.subnet] = subnets_seen.get(contact.subnet, 0) + 1
            assert all(n <= 2 for n in subnets_seen.values())


RoutingTableMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestRoutingTable = RoutingTableMachine.TestCase


def test_full_bucket_parks_newcomer_and_promotes_it_when_the_oldest_dies() -> None:
    own = PeerId(b"\x00" * 32)
    table = RoutingTable(own, k=2, per_subnet=None)
    far = [PeerId(bytes([0x80 + i]) + b"\x00" * 31) for i in range(3)]
    assert table.add(Contact(far[0], "127.0.0.1:1"), 1) is None
    assert table.add(Contact(far[1], "127.0.0.1:2"), 2) is None
    oldest = table.add(Contact(far[2], "127.0.0.1:3"), 3)
    assert oldest is not None and oldest.peer_id == far[0]
    assert far[2] not in table
    table.remove(far[0], 4)  # the ping failed
    assert far[2] in table and far[0] not in table


def test_two_per_slash24_per_bucket() -> None:
    own = PeerId(b"\x00" * 32)
    table = RoutingTable(own, k=20, per_subnet=2)
    for i in range(5):
        table.add(Contact(PeerId(bytes([0x80 + i]) + b"\x01" * 31), f"198.51.100.{i + 1}:7400"), i)
    assert len(table) == 2
    table.add(Contact(PeerId(b"\xf0" + b"\x01" * 31), "203.0.113.9:7400"), 9)
    assert len(table) == 3
    for i in range(5):  # loopback is exempt
        table.add(Contact(PeerId(bytes([0x90 + i]) + b"\x02" * 31), f"127.0.0.1:{7400 + i}"), 10 + i)
    assert len(table) == 8
