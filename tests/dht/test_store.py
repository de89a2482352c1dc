"""The record store's caps: a full key keeps a random sample of publishers, not the newest ones."""

from __future__ import annotations

import random

import pytest

from cocoon_p2p.dht import RecordStore
from cocoon_p2p.dht.records import RecordRejected, sign_record
from cocoon_p2p.identity import Identity

KEY = bytes(32)
NOW = 1_800_000_000.0


def _records(count: int) -> list:
    return [
        sign_record(Identity.generate(), "provider", KEY, b"v", seq=1, expires=int(NOW) + 3600 + i)
        for i in range(count)
    ]


def test_a_full_key_keeps_a_different_random_sample_on_each_holder() -> None:
    records = _records(60)
    kept = []
    for seed in range(4):
        store = RecordStore(per_key=8, rng=random.Random(seed))
        for record in records:  # arriving oldest first: evicting by expiry would keep the last 8
            store.put(record, NOW)
        held = {r.publisher for r in store.get(KEY, NOW)}
        assert len(held) == 8 and len(store) == 8
        kept.append(held)
    newest = {r.publisher for r in records[-8:]}
    assert any(held != newest for held in kept)
    assert len(set.union(*kept)) > 8  # holders disagree, so readers of several see more publishers


def test_the_same_seed_keeps_the_same_sample() -> None:
    records = _records(30)
    samples = []
    for _ in range(2):
        store = RecordStore(per_key=5, rng=random.Random(11))
        for record in records:
            store.put(record, NOW)
        samples.append({r.publisher for r in store.get(KEY, NOW)})
    assert samples[0] == samples[1]


def test_an_expired_record_is_evicted_before_a_live_one() -> None:
    live = _records(3)
    stale = sign_record(Identity.generate(), "provider", KEY, b"v", seq=1, expires=int(NOW) - 1)
    store = RecordStore(per_key=4, rng=random.Random(0))
    store.put(stale, NOW - 10)
    for record in live:
        store.put(record, NOW)
    newcomer = _records(1)[0]
    store.put(newcomer, NOW)
    assert {r.publisher for r in store.get(KEY, NOW)} == {r.publisher for r in [*live, newcomer]}


def test_a_stale_sequence_number_is_refused() -> None:
    identity = Identity.generate()
    store = RecordStore()
    store.put(sign_record(identity, "provider", KEY, b"new", seq=5, expires=int(NOW) + 60), NOW)
    with pytest.raises(RecordRejected):
        store.put(sign_record(identity, "provider", KEY, b"old", seq=4, expires=int(NOW) + 60), NOW)


def test_the_sample_reaches_back_to_early_publishers() -> None:
    """Uniform over arrivals, not biased to the newest: early joiners stay findable."""
    records = _records(200)
    early = {r.publisher for r in records[:100]}
    kept_early = kept_total = 0
    for seed in range(20):
        store = RecordStore(per_key=16, rng=random.Random(seed))
        for record in records:
            store.put(record, NOW)
        held = {r.publisher for r in store.get(KEY, NOW)}
        kept_early += len(held & early)
        kept_total += len(held)
    assert 0.35 <= kept_early / kept_total <= 0.65
