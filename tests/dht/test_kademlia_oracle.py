"""Differential tests against the `kademlia` package on the definitions both share."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from kademlia.node import Node, NodeHeap
from kademlia.routing import RoutingTable as OracleTable
from kademlia.utils import bytes_to_bit_string, shared_prefix

from cocoon_p2p.dht import Contact, RoutingTable, bucket_index, common_prefix_length, distance
from cocoon_p2p.identity import PeerId

id32 = st.binary(min_size=32, max_size=32)


@given(id32, id32)
def test_xor_distance_matches(a: bytes, b: bytes) -> None:
    assert distance(a, b) == Node(a).distance_to(Node(b))


@given(id32, id32)
def test_shared_prefix_matches(a: bytes, b: bytes) -> None:
    oracle = len(shared_prefix([bytes_to_bit_string(a), bytes_to_bit_string(b)]))
    assert common_prefix_length(a, b) == oracle


@settings(max_examples=50)
@given(id32, st.lists(id32, min_size=1, max_size=80, unique=True), st.integers(1, 25))
def test_k_closest_selection_matches_node_heap(target: bytes, others: list[bytes], k: int) -> None:
    heap = NodeHeap(Node(target), k)
    heap.push([Node(o) for o in others])
    oracle = [n.id for n in heap][:k]
    own = PeerId(bytes(32)) if bytes(32) not in others else PeerId(b"\x01" * 32)
    table = RoutingTable(own, k=len(others) + 1, per_subnet=None)
    for i, o in enumerate(others):
        if o != own.raw:
            table.add(Contact(PeerId(o), f"127.0.0.1:{i + 1}"), 0)
    ours = [c.peer_id.raw for c in table.closest(target, k) if c.peer_id != own]
    assert ours == [o for o in oracle if o != own.raw][: len(ours)]


class _NoPing:
    async def call_ping(self, node: Node) -> None:  # the oracle pings when a far bucket fills
        return None


def test_bucket_placement_agrees_with_oracle_splits() -> None:
    """Every oracle bucket that excludes the owner maps to exactly one of our buckets."""
    rng = random.Random(7)
    own_raw = rng.randbytes(20)
    oracle = OracleTable(_NoPing(), 20, Node(own_raw))
    ids = [rng.randbytes(20) for _ in range(2000)]
    for node_id in ids:
        try:
            oracle.add_contact(Node(node_id))
        except RuntimeError:
            pass  # asyncio.ensure_future without a loop: a ping the oracle cannot send here
    own_int = int.from_bytes(own_raw, "big")
    checked = 0
    for bucket in oracle.buckets:
        lo, hi = bucket.range
        if lo <= own_int <= hi or not bucket.nodes:
            continue
        ours = {bucket_index(own_raw, node_id) for node_id in bucket.nodes}
        assert len(ours) == 1, f"oracle bucket {lo:x}-{hi:x} spans our buckets {ours}"
        checked += 1
    assert checked >= 5
