"""Signed messages, ids, caches and topic records, without a network."""

from __future__ import annotations

import pytest

from cocoon_p2p.dht import Record, RecordRejected, sign_record
from cocoon_p2p.gossip import MessageRejected, sign_message, topic_key
from cocoon_p2p.gossip.caches import MessageCache, SeenCache
from cocoon_p2p.gossip.discovery import TOPIC_RECORD, topic_record_value, validate_topic_record
from cocoon_p2p.gossip.message import MessageCodec
from cocoon_p2p.identity import Identity

MAX = 64 << 10
NOW = 1_800_000_000.0
ALICE = Identity(b"\x01" * 32)
MALLORY = Identity(b"\x02" * 32)


def make_codec(max_age: float = 100.0) -> MessageCodec:
    return MessageCodec(max_size=MAX, max_topic_len=256, max_age=max_age, max_skew=10.0)


def signed(data: bytes = b"hello", *, identity: Identity = ALICE, ts: float = NOW, seq: int = 1) -> dict:
    return sign_message(identity, "rfq/m", data, seqno=seq, ts_ms=int(ts * 1000))


def reason(fn, *args) -> str:
    with pytest.raises(MessageRejected) as info:
        fn(*args)
    return info.value.reason


def test_a_genuine_message_passes_every_check() -> None:
    codec = make_codec()
    decoded = codec.decode(signed())
    codec.check_fresh(decoded, NOW)
    codec.check_signature(decoded)
    msg = decoded.to_message(None)
    assert msg.origin == ALICE.peer_id and msg.origin_key == ALICE.public_key
    assert msg.data == b"hello" and msg.topic == "rfq/m" and msg.seqno == 1 and msg.timestamp == NOW
    assert len(msg.msg_id) == 32


def test_tampering_breaks_the_signature_and_changes_the_id() -> None:
    codec = make_codec()
    genuine = signed()
    for field, value in [("data", b"HELLO"), ("topic", "rfq/other"), ("seq", 2), ("ts", genuine["ts"] + 1)]:
        forged = {**genuine, field: value}
        decoded = codec.decode(forged)
        assert decoded.msg_id != codec.decode(genuine).msg_id
        assert reason(codec.check_signature, decoded) == "bad_signature"
    # Claiming Alice's key while signing with Mallory's.
    impostor = {**signed(identity=MALLORY), "key": ALICE.public_key}
    assert reason(codec.check_signature, codec.decode(impostor)) == "bad_signature"


def test_a_forged_copy_cannot_shadow_the_genuine_id() -> None:
    codec = make_codec()
    genuine = signed()
    bad_sig = {**genuine, "sig": bytes(64)}
    assert codec.decode(bad_sig).msg_id != codec.decode(genuine).msg_id


def test_hops_are_unsigned_metadata_outside_the_id() -> None:
    codec = make_codec()
    genuine = codec.decode(signed())
    relayed = codec.decode(genuine.relayed())
    assert relayed.hops == 1 and relayed.msg_id == genuine.msg_id
    codec.check_signature(relayed)


def test_size_limit_covers_the_signed_message() -> None:
    codec = make_codec()
    assert reason(codec.decode, signed(b"x" * (MAX + 1))) == "oversized"
    assert reason(codec.decode, signed(b"x" * (MAX - 10))) == "oversized"  # data fits, the whole does not
    codec.decode(signed(b"x" * (MAX - 200)))


def test_stale_and_future_timestamps_are_refused() -> None:
    codec = make_codec(max_age=100.0)
    assert reason(codec.check_fresh, codec.decode(signed(ts=NOW - 101)), NOW) == "stale"
    assert reason(codec.check_fresh, codec.decode(signed(ts=NOW + 11)), NOW) == "future"
    codec.check_fresh(codec.decode(signed(ts=NOW - 99)), NOW)
    codec.check_fresh(codec.decode(signed(ts=NOW + 9)), NOW)


@pytest.mark.parametrize(
    "mutation",
    [
        lambda m: m.pop("sig"),
        lambda m: m.update(key=b"short"),
        lambda m: m.update(topic=""),
        lambda m: m.update(seq=-1),
        lambda m: m.update(data="text, not bytes"),
        lambda m: m.update(hops=999),
    ],
)
def test_malformed_messages_are_typed_rejections(mutation) -> None:
    msg = signed()
    mutation(msg)
    assert reason(make_codec().decode, msg) == "malformed"
    assert reason(make_codec().decode, ["not", "a", "map"]) == "malformed"


# --- caches -------------------------------------------------------------------
def test_seen_cache_expires_after_ttl_and_replays_do_not_extend_it() -> None:
    seen = SeenCache(120.0)
    assert seen.add(b"a", 0.0)
    assert not seen.add(b"a", 100.0)  # a replay inside the TTL is a duplicate...
    seen.expire(119.9)
    assert b"a" in seen
    seen.expire(120.0)  # ...and does not keep the id alive past its first arrival's TTL
    assert b"a" not in seen and len(seen) == 0


def test_seen_cache_is_bounded() -> None:
    seen = SeenCache(120.0, max_entries=3)
    for i in range(5):
        seen.add(bytes([i]), 0.0)
    assert len(seen) == 3 and bytes([0]) not in seen and bytes([4]) in seen


def test_message_cache_advertises_recent_windows_and_keeps_a_longer_history() -> None:
    cache = MessageCache(length=5, gossip=3)
    cache.put(b"old", "t", {"topic": "t"})
    for _ in range(3):
        cache.shift()
    cache.put(b"new", "t", {"topic": "t"})
    cache.put(b"other", "u", {"topic": "u"})
    assert cache.gossip_ids("t") == [b"new"]  # "old" is past the advertised windows...
    assert cache.get(b"old") is not None  # ...but still answers IWANT
    assert cache.topics() == {"t", "u"}
    cache.shift()
    cache.shift()
    assert cache.get(b"old") is None and b"new" in cache


def test_message_cache_serves_one_peer_a_bounded_number_of_times() -> None:
    cache = MessageCache(length=5, gossip=3)
    cache.put(b"m", "t", {"topic": "t"})
    assert [cache.serve(b"m", "peer", 3) is not None for _ in range(4)] == [True, True, True, False]
    assert cache.serve(b"m", "another", 3) is not None
    assert cache.serve(b"unknown", "peer", 3) is None


# --- topic records ------------------------------------------------------------
def topic_record(key: bytes, value: bytes) -> Record:
    return sign_record(ALICE, TOPIC_RECORD, key, value, seq=1, expires=int(NOW) + 3600)


def test_topic_records_must_sit_under_their_topic_key() -> None:
    validate_topic_record(topic_record(topic_key("rfq/m"), topic_record_value("rfq/m", "10.0.0.1:7400")))
    with pytest.raises(RecordRejected):
        validate_topic_record(topic_record(topic_key("rfq/x"), topic_record_value("rfq/m", "10.0.0.1:7400")))
    with pytest.raises(RecordRejected):
        validate_topic_record(topic_record(topic_key("rfq/m"), b"\xc1garbage"))


def test_topic_key_is_domain_separated() -> None:
    import hashlib

    assert topic_key("rfq/m") == hashlib.sha256(b"cocoon-p2p/topic/rfq/m").digest()
    assert topic_key("a") != topic_key("b")
