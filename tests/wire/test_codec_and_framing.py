"""Codec round trips and hostile bytes at every decoder: only ProtocolError comes out."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon_p2p.errors import CodecError, ProtocolError
from cocoon_p2p.identity import Identity
from cocoon_p2p.wire import codec
from cocoon_p2p.wire.codec import BYTES32, Field, Schema
from cocoon_p2p.wire.secure import FrameReader, secure_stream

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=50) | st.binary(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), values, max_size=8))
def test_codec_round_trips(msg: dict) -> None:
    assert codec.unpack_map(codec.pack(msg)) == msg


@given(st.binary(max_size=300))
def test_arbitrary_bytes_to_message_decoder_raise_only_codec_error(data: bytes) -> None:
    try:
        codec.unpack_map(data)
    except CodecError:
        pass


def test_codec_refuses_ext_types_non_string_keys_and_oversize() -> None:
    import msgpack

    with pytest.raises(CodecError):
        codec.unpack(msgpack.packb(msgpack.ExtType(1, b"x")))
    with pytest.raises(CodecError):
        codec.unpack(msgpack.packb({1: 2}))
    with pytest.raises(CodecError):
        codec.unpack(b"\x00" * 100, max_size=10)


def test_schema_rejects_wrong_types_missing_fields_and_bool_as_int() -> None:
    schema = Schema("t", id=BYTES32, n=Field(int, min_value=0, max_value=9), note=Field(str, optional=True))
    assert schema.validate({"id": b"x" * 32, "n": 3, "extra": 1}) == {"id": b"x" * 32, "n": 3, "note": None}
    for bad in (
        {"id": b"x" * 31, "n": 1},
        {"id": b"x" * 32},
        {"id": b"x" * 32, "n": True},
        {"id": b"x" * 32, "n": 10},
        [],
    ):
        with pytest.raises(CodecError):
            schema.validate(bad)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_to_frame_reader_and_handshake_raise_only_protocol_errors(data: bytes) -> None:
    async def feed_frames() -> None:
        send, receive = trio.testing.memory_stream_pair()
        await send.send_all(data)
        await send.aclose()
        reader = FrameReader(receive)
        try:
            while True:
                await reader.read_frame()
        except (ProtocolError, trio.EndOfChannel):
            pass

    async def feed_handshake(initiator: bool) -> None:
        ours, theirs = trio.testing.memory_stream_pair()

        async def attacker() -> None:
            await theirs.send_all(data)
            await theirs.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(attacker)
            with pytest.raises(ProtocolError):
                await secure_stream(ours, IDENTITY, initiator=initiator, timeout=5)

    trio.run(feed_frames)
    trio.run(feed_handshake, False)
    trio.run(feed_handshake, True)


IDENTITY = Identity.generate()
