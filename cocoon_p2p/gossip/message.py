"""Signed gossip messages: wire form, message ids, and the checks every peer runs.

The origin signs ``[domain, topic, origin key, seqno, timestamp, data]``; the
message id is the SHA-256 of those signed bytes followed by the signature, so two
copies share an id only if they are byte-identical where it matters. A forged
copy (same content, bad signature) therefore gets its own id and can never
shadow the genuine message in a seen-cache. ``hops`` travels unsigned: relays
increment it, and it feeds statistics only, never a decision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import CocoonError, CodecError
from ..identity import Identity, PeerId, verify_signature
from ..wire import codec
from ..wire.codec import BYTES32, BYTES64, U64, Field, Schema

GOSSIP_DOMAIN = "cocoon-p2p-gossip/1"
TOPIC_DOMAIN = b"cocoon-p2p/topic/"
MAX_HOPS = 255


def topic_key(topic: str) -> bytes:
    """The DHT key under which subscribers of ``topic`` announce themselves."""
    return hashlib.sha256(TOPIC_DOMAIN + topic.encode()).digest()


class MessageRejected(CocoonError):
    """A gossip message failed validation; ``reason`` names the check."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class GossipMessage:
    topic: str
    data: bytes
    origin: PeerId
    origin_key: bytes
    seqno: int
    msg_id: bytes
    received_from: PeerId | None  # None when we published it ourselves
    timestamp: float = 0.0  # the origin's wall clock, Unix seconds
    hops: int = 0  # relays it crossed before reaching us (0 for our own)


def _wire_schema(max_topic_len: int, max_data: int) -> Schema:
    return Schema(
        "gossip_message",
        topic=Field(str, max_len=max_topic_len),
        key=BYTES32,
        seq=U64,
        ts=U64,
        data=Field(bytes, max_len=max_data),
        sig=BYTES64,
        hops=Field(int, min_value=0, max_value=MAX_HOPS, optional=True),
    )


def _signed_bytes(topic: str, key: bytes, seq: int, ts_ms: int, data: bytes) -> bytes:
    return codec.pack([GOSSIP_DOMAIN, topic, key, seq, ts_ms, data])


def _message_id(signed: bytes, sig: bytes) -> bytes:
    return hashlib.sha256(signed + sig).digest()


def sign_message(identity: Identity, topic: str, data: bytes, *, seqno: int, ts_ms: int) -> dict[str, Any]:
    """The wire form of a new message (no size or validator checks: callers do those)."""
    signed = _signed_bytes(topic, identity.public_key, seqno, ts_ms, data)
    return {
        "topic": topic,
        "key": identity.public_key,
        "seq": seqno,
        "ts": ts_ms,
        "data": data,
        "sig": identity.sign(signed),
        "hops": 0,
    }


@dataclass
class Decoded:
    """A structurally valid message whose signature has not been checked yet."""

    wire: dict[str, Any]
    msg_id: bytes
    signed: bytes

    @property
    def topic(self) -> str:
        return self.wire["topic"]

    @property
    def hops(self) -> int:
        return self.wire.get("hops") or 0

    def relayed(self) -> dict[str, Any]:
        """The copy we send onwards: the same signed fields, one more hop."""
        return {**self.wire, "hops": min(self.hops + 1, MAX_HOPS)}

    def to_message(self, received_from: PeerId | None) -> GossipMessage:
        w = self.wire
        return GossipMessage(
            topic=w["topic"],
            data=w["data"],
            origin=PeerId.from_public_key(w["key"]),
            origin_key=w["key"],
            seqno=w["seq"],
            msg_id=self.msg_id,
            received_from=received_from,
            timestamp=w["ts"] / 1000.0,
            hops=self.hops,
        )


class MessageCodec:
    """Decodes and checks messages under one peer's limits."""

    def __init__(self, *, max_size: int, max_topic_len: int, max_age: float, max_skew: float) -> None:
        self.max_size = max_size
        self.max_age = max_age
        self.max_skew = max_skew
        self._schema = _wire_schema(max_topic_len, max_size)

    def decode(self, raw: Any) -> Decoded:
        """Shape and size checks, then the id; cheap enough to run before dedup."""
        try:
            wire = self._schema.validate(raw)
        except CodecError as exc:
            # The data field is bounded by the same limit: report it as the size violation it is.
            reason = "oversized" if isinstance(raw, dict) and _too_long(raw.get("data"), self.max_size) else "malformed"
            raise MessageRejected(reason, str(exc)) from None
        if not wire["topic"]:
            raise MessageRejected("malformed", "empty topic")
        signed = _signed_bytes(wire["topic"], wire["key"], wire["seq"], wire["ts"], wire["data"])
        if len(signed) + len(wire["sig"]) > self.max_size:
            raise MessageRejected("oversized", f"signed message exceeds {self.max_size} bytes")
        return Decoded(wire, _message_id(signed, wire["sig"]), signed)

    def check_fresh(self, decoded: Decoded, now: float) -> None:
        ts = decoded.wire["ts"] / 1000.0
        if ts > now + self.max_skew:
            raise MessageRejected("future", f"timestamp {ts - now:.1f} s ahead")
        if now - ts > self.max_age:
            raise MessageRejected("stale", f"timestamp {now - ts:.1f} s old")

    def check_signature(self, decoded: Decoded) -> None:
        if not verify_signature(decoded.wire["key"], decoded.signed, decoded.wire["sig"]):
            raise MessageRejected("bad_signature")

    def encoded_size(self, wire: dict[str, Any]) -> int:
        return len(_signed_bytes(wire["topic"], wire["key"], wire["seq"], wire["ts"], wire["data"])) + len(wire["sig"])


def _too_long(value: Any, limit: int) -> bool:
    return isinstance(value, bytes) and len(value) > limit
