"""Application messages over a secure channel: sizes around every frame boundary, the
threaded path for big messages, tampering, and frames split differently by another client."""

from __future__ import annotations

import os
import socket
import struct

import pytest
import trio
import trio.testing

from cocoon_p2p.errors import DecryptError, LimitExceeded, ProtocolError
from cocoon_p2p.identity import Identity
from cocoon_p2p.net.socket_stream import TcpSocketStream
from cocoon_p2p.wire import codec
from cocoon_p2p.wire.limits import MAX_FRAME_PLAINTEXT
from cocoon_p2p.wire.noise import MAX_NONCE, CipherState, ffi_pointer
from cocoon_p2p.wire.secure import (
    IDENTITY_DOMAIN,
    THREAD_CRYPTO_MIN,
    SecureChannel,
    identity_payload,
    secure_stream,
    verify_identity_payload,
)


async def _channels() -> tuple[SecureChannel, SecureChannel]:
    left, right = socket.socketpair()
    box: list[SecureChannel] = []

    async def accept() -> None:
        box.append(await secure_stream(TcpSocketStream(right), Identity.generate(), initiator=False))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        dialer = await secure_stream(TcpSocketStream(left), Identity.generate(), initiator=True)
    return dialer, box[0]


SIZES = [
    0,
    1,
    MAX_FRAME_PLAINTEXT - 4,
    MAX_FRAME_PLAINTEXT - 3,
    MAX_FRAME_PLAINTEXT,
    2 * MAX_FRAME_PLAINTEXT - 4,
    200_000,
    THREAD_CRYPTO_MIN - 1,
    THREAD_CRYPTO_MIN,
    1 << 20,
]


@pytest.mark.parametrize("size", SIZES)
async def test_messages_of_every_size_arrive_intact(size: int) -> None:
    sender, receiver = await _channels()
    payload = os.urandom(size)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.send_message, payload)
        got = await receiver.receive_message()
    assert got == payload
    assert isinstance(got, bytes)
    # The session stays in step afterwards.
    await receiver.send_message(b"ack")
    assert await sender.receive_message() == b"ack"


async def test_a_flipped_byte_in_a_later_frame_fails_authentication() -> None:
    sender, receiver = await _channels()
    wire = bytearray(sender._seal(os.urandom(200_000)))
    wire[3 * (MAX_FRAME_PLAINTEXT + 18) - 100] ^= 0x01
    await sender.stream.send_all(wire)
    with pytest.raises(DecryptError):
        await receiver.receive_message()


async def test_frames_split_smaller_by_another_client_still_decode() -> None:
    sender, receiver = await _channels()
    payload = os.urandom(5000)
    data = struct.pack(">I", len(payload)) + payload
    for start in range(0, len(data), 1000):
        ciphertext = sender._send_cipher.encrypt_with_ad(b"", data[start : start + 1000])
        await sender.stream.send_all(struct.pack(">H", len(ciphertext)) + ciphertext)
    assert await receiver.receive_message() == payload


async def test_an_announced_message_over_the_limit_is_refused_before_it_arrives() -> None:
    sender, receiver = await _channels()
    ciphertext = sender._send_cipher.encrypt_with_ad(b"", struct.pack(">I", receiver.max_message + 1))
    await sender.stream.send_all(struct.pack(">H", len(ciphertext)) + ciphertext)
    with pytest.raises(LimitExceeded):
        await receiver.receive_message()


def test_copy_free_sealing_keeps_the_nonce_rules() -> None:
    sender, receiver = CipherState(bytes(32)), CipherState(bytes(32))
    plain = bytearray(b"p" * 1000)
    wire = bytearray(1016)
    sender.encrypt_into(ffi_pointer(wire), ffi_pointer(plain), 1000)
    opened = bytearray(1000)
    receiver.decrypt_into(ffi_pointer(opened), ffi_pointer(wire), 1016)
    assert opened == plain and sender.n == receiver.n == 1
    wire[5] ^= 1
    with pytest.raises(DecryptError):
        receiver.decrypt_into(ffi_pointer(opened), ffi_pointer(wire), 1016)
    assert receiver.n == 1  # a failed frame does not use up its nonce
    sender.set_nonce(MAX_NONCE)
    with pytest.raises(ProtocolError):
        sender.encrypt_into(ffi_pointer(wire), ffi_pointer(plain), 1000)
    with pytest.raises(ValueError):
        CipherState(None).encrypt_into(ffi_pointer(wire), ffi_pointer(plain), 1000)


async def test_a_no_wait_send_the_socket_cannot_take_whole_is_finished_in_order() -> None:
    sender, receiver = await _channels()
    sock = sender.stream.socket  # type: ignore[attr-defined]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = os.urandom(200_000)  # far more than the socket buffer, under the threaded-path size
    assert sender.send_message_nowait(big)
    assert sender.has_backlog
    # Nothing else may slip in before the tail: a second no-wait send refuses...
    assert not sender.send_message_nowait(b"second")
    got: list[bytes] = []

    async def read(n: int) -> None:
        for _ in range(n):
            got.append(await receiver.receive_message())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, 3)
        # ...and a waiting send writes the tail first.
        await sender.send_message(b"third")
        await sender.flush()
        assert not sender.has_backlog
        assert sender.send_message_nowait(b"fourth")
    assert got == [big, b"third", b"fourth"]


async def test_a_no_wait_send_declines_while_another_send_holds_the_channel() -> None:
    sender, receiver = await _channels()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.send_message, os.urandom(THREAD_CRYPTO_MIN))  # holds the lock while it runs
        await trio.testing.wait_all_tasks_blocked()
        assert not sender.send_message_nowait(b"later")
        assert len(await receiver.receive_message()) == THREAD_CRYPTO_MIN
    assert sender.send_message_nowait(b"later")
    assert await receiver.receive_message() == b"later"


async def test_the_no_wait_receive_path_reassembles_big_messages_and_sees_a_clean_close() -> None:
    sender, receiver = await _channels()
    small, big = b"s" * 10, os.urandom(3 * MAX_FRAME_PLAINTEXT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.send_message, small)
        assert await receiver.receive_message() == small
        nursery.start_soon(sender.send_message, big)
        assert await receiver.receive_message() == big  # first frame taken without waiting, rest awaited
        for i in range(40):  # more than a fairness run in a row, all already buffered
            await sender.send_message(bytes([i]))
        assert [await receiver.receive_message() for _ in range(40)] == [bytes([i]) for i in range(40)]
    await sender.stream.aclose()
    with pytest.raises(trio.EndOfChannel):
        await receiver.receive_message()


async def test_an_identity_signs_the_process_static_key_once_for_many_handshakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity = Identity.generate()
    signed: list[bytes] = []
    sign = identity.sign
    monkeypatch.setattr(identity, "sign", lambda message: signed.append(message) or sign(message))
    for _ in range(3):
        left, right = socket.socketpair()
        accepted: list[SecureChannel] = []

        async def accept(sock: socket.socket = right, box: list[SecureChannel] = accepted) -> None:
            box.append(await secure_stream(TcpSocketStream(sock), Identity.generate(), initiator=False))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            dialer = await secure_stream(TcpSocketStream(left), identity, initiator=True)
        await dialer.aclose()
        await accepted[0].aclose()
    assert len(signed) == 1
    # The cached payload is what a fresh signature gives, and it still proves the binding.
    static = signed[0][len(IDENTITY_DOMAIN) :]
    fresh = codec.pack({"v": 1, "key": identity.public_key, "sig": sign(signed[0])})
    assert identity_payload(identity, static) == fresh
    assert verify_identity_payload(fresh, static) == identity.public_key
