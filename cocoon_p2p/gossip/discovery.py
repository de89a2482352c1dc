"""Finding a topic's subscribers through the DHT.

A subscriber publishes a ``topic`` record under ``topic_key(topic)``: signed by
its identity (so the publisher's peer id is authenticated), with its address and
the topic name as the value. The type is our own rather than ``provider`` because
the market replaces the provider validator with a strict offer check; every peer
that stores DHT records must therefore register ours (``register_topic_records``,
which ``Gossip`` does for its own DHT).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dht import Dht, Record, RecordRejected, RecordValidator
from ..errors import CodecError
from ..identity import PeerId
from ..wire import codec
from ..wire.codec import Field, Schema
from .message import topic_key

TOPIC_RECORD = "topic"
_VALUE = Schema("topic_value", topic=Field(str, max_len=256), addrs=Field(list, max_len=8))


@dataclass(frozen=True)
class Subscriber:
    peer_id: PeerId
    address: str


def topic_record_value(topic: str, address: str) -> bytes:
    return codec.pack({"topic": topic, "addrs": [address]})


def _parse(record: Record) -> tuple[str, list[str]]:
    value = _VALUE.validate(codec.unpack(record.value, max_size=4096))
    addrs = value["addrs"]
    if not addrs or not all(isinstance(a, str) and 0 < len(a) <= 64 for a in addrs):
        raise RecordRejected("a topic record lists 1-8 addresses of at most 64 characters")
    return value["topic"], addrs


def validate_topic_record(record: Record) -> None:
    try:
        topic, _ = _parse(record)
    except CodecError as exc:
        raise RecordRejected(f"bad topic record: {exc}") from None
    if record.key != topic_key(topic):
        raise RecordRejected("a topic record must be stored under its topic's key")


def register_topic_records(validator: RecordValidator) -> None:
    """Let a DHT store and serve gossip topic records (every peer should)."""
    validator.register(TOPIC_RECORD, validate_topic_record)


async def announce(dht: Dht, topic: str) -> int:
    """Publish (and keep republishing) our subscription; returns how many peers stored it."""
    return await dht.publish(TOPIC_RECORD, topic_key(topic), topic_record_value(topic, dht.my_address))


async def withdraw(dht: Dht, topic: str) -> None:
    await dht.unpublish(TOPIC_RECORD, topic_key(topic))


async def find_subscribers(dht: Dht, topic: str, *, enough: int | None = None) -> list[Subscriber]:
    result = await dht.get_records(topic_key(topic), enough=enough)
    found = []
    for record in result.records:
        if record.type != TOPIC_RECORD:
            continue
        try:
            _, addrs = _parse(record)
        except CodecError:
            continue
        found.append(Subscriber(record.publisher_id, addrs[0]))
    return found
