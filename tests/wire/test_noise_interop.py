"""Our XX against the ``noiseprotocol`` package, plus adversarial input and misuse.

Both ends run in memory and exchange exact bytes, so any divergence from the
spec on either side shows up as an authentication failure or a payload mismatch.
"""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_scalarmult_base
from noise.connection import Keypair, NoiseConnection

from cocoon_p2p.errors import DecryptError, HandshakeError, LimitExceeded, ProtocolError
from cocoon_p2p.wire.noise import MAX_NONCE, CipherState, NoiseHandshake, process_static_private

PROLOGUE = b"cocoon-p2p/1"
NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
PAYLOADS = [b"", b"hello from the responder" * 3, b"\x00identity+signature" * 5]
MAX_PLAINTEXT = 65535 - 16

# X25519 u-coordinates of small order (and non-canonical encodings of them):
# a DH with any of these yields all zeros, which must abort the handshake.
LOW_ORDER_POINTS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def _theirs(initiator: bool, static_private: bytes) -> NoiseConnection:
    conn = NoiseConnection.from_name(NAME)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
    conn.set_prologue(PROLOGUE)
    conn.start_handshake()
    return conn


def _handshake_pair() -> tuple[NoiseHandshake, NoiseHandshake]:
    init = NoiseHandshake(True, PROLOGUE, os.urandom(32))
    resp = NoiseHandshake(False, PROLOGUE, os.urandom(32))
    return init, resp


def _completed_ciphers() -> tuple[tuple[CipherState, CipherState], tuple[CipherState, CipherState]]:
    init, resp = _handshake_pair()
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    resp.read_message(init.write_message())
    return init.split(), resp.split()


@pytest.mark.parametrize("we_initiate", [True, False], ids=["ours-initiator", "ours-responder"])
def test_interop_handshake_and_transport(we_initiate: bool) -> None:
    our_key, their_key = os.urandom(32), os.urandom(32)
    ours = NoiseHandshake(we_initiate, PROLOGUE, our_key)
    theirs = _theirs(not we_initiate, their_key)

    for i, payload in enumerate(PAYLOADS):
        if (i % 2 == 0) == we_initiate:
            message = ours.write_message(payload)
            assert bytes(theirs.read_message(message)) == payload
        else:
            message = bytes(theirs.write_message(payload))
            assert ours.read_message(message) == payload

    assert ours.complete and theirs.handshake_finished
    assert ours.handshake_hash == theirs.get_handshake_hash()
    # Public keys derived independently of our code, through the public pynacl API.
    assert ours.remote_static == crypto_scalarmult_base(their_key)
    assert ours.static_public == crypto_scalarmult_base(our_key)

    send, recv = ours.split()
    for size in (0, 1, 1000, MAX_PLAINTEXT):
        data = os.urandom(size)
        assert bytes(theirs.decrypt(send.encrypt_with_ad(b"", data))) == data
        reply = os.urandom(size)
        assert recv.decrypt_with_ad(b"", bytes(theirs.encrypt(reply))) == reply
    assert send.n == recv.n == 4

    # Rekey on both ends of one direction keeps the stream readable.
    send.rekey()
    theirs.rekey_inbound_cipher()
    assert bytes(theirs.decrypt(send.encrypt_with_ad(b"", b"after rekey"))) == b"after rekey"


@pytest.mark.parametrize("we_initiate", [True, False], ids=["ours-initiator", "ours-responder"])
def test_interop_detects_prologue_mismatch(we_initiate: bool) -> None:
    ours = NoiseHandshake(we_initiate, b"other-protocol/1", os.urandom(32))
    theirs = _theirs(not we_initiate, os.urandom(32))
    if we_initiate:
        theirs.read_message(ours.write_message())  # message 1 carries no tag yet
        with pytest.raises(HandshakeError):
            ours.read_message(bytes(theirs.write_message()))
    else:
        ours.read_message(bytes(theirs.write_message()))
        with pytest.raises(InvalidTag):
            theirs.read_message(ours.write_message())


# -- hostile bytes ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(step=st.integers(0, 2), garbage=st.binary(max_size=300))
def test_garbage_handshake_input_raises_only_protocol_errors(step: int, garbage: bytes) -> None:
    init, resp = _handshake_pair()
    if step >= 1:
        resp.read_message(init.write_message(b"m1"))
    if step == 2:
        init.read_message(resp.write_message(b"m2"))
    reader = init if step == 1 else resp
    try:
        reader.read_message(garbage)
    except ProtocolError:
        assert not reader.complete
        with pytest.raises(HandshakeError):  # a failed handshake stays dead
            reader.read_message(garbage)
        return
    # Only message 1 is unauthenticated, so only it can be accepted; what follows
    # must still fail cleanly (e.g. a low-order ephemeral).
    assert step == 0
    try:
        reader.write_message(b"")
    except ProtocolError:
        pass


@settings(max_examples=150, deadline=None)
@given(ad=st.binary(max_size=64), garbage=st.binary(max_size=200))
def test_garbage_transport_input_raises_decrypt_error(ad: bytes, garbage: bytes) -> None:
    (_, init_recv), _ = _completed_ciphers()
    with pytest.raises(DecryptError):
        init_recv.decrypt_with_ad(ad, garbage)
    assert init_recv.n == 0


@settings(max_examples=150, deadline=None)
@given(data=st.data(), payload=st.binary(max_size=300), mask=st.integers(1, 255))
def test_any_flipped_byte_is_rejected_without_advancing_the_nonce(
    data: st.DataObject, payload: bytes, mask: int
) -> None:
    (init_send, _), (_, resp_recv) = _completed_ciphers()
    ciphertext = init_send.encrypt_with_ad(b"", payload)
    index = data.draw(st.integers(0, len(ciphertext) - 1))
    tampered = bytearray(ciphertext)
    tampered[index] ^= mask
    with pytest.raises(DecryptError):
        resp_recv.decrypt_with_ad(b"", bytes(tampered))
    assert resp_recv.n == 0
    assert resp_recv.decrypt_with_ad(b"", ciphertext) == payload


# -- misuse and limits -----------------------------------------------------------------


def test_wrong_order_and_after_completion_are_handshake_errors() -> None:
    init, resp = _handshake_pair()
    with pytest.raises(HandshakeError):
        resp.write_message()
    with pytest.raises(HandshakeError):
        init.read_message(bytes(32))
    with pytest.raises(HandshakeError):
        init.split()
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    resp.read_message(init.write_message())
    assert init.complete and resp.complete
    for hs in (init, resp):
        with pytest.raises(HandshakeError):
            hs.write_message()
        with pytest.raises(HandshakeError):
            hs.read_message(bytes(100))
    init.split()
    with pytest.raises(HandshakeError):
        init.split()


@pytest.mark.parametrize("size", [0, 31])
def test_short_first_message_is_rejected(size: int) -> None:
    _, resp = _handshake_pair()
    with pytest.raises(HandshakeError):
        resp.read_message(bytes(size))


def test_truncated_second_and_third_messages_are_rejected() -> None:
    init, resp = _handshake_pair()
    resp.read_message(init.write_message())
    message2 = resp.write_message()
    with pytest.raises(HandshakeError):
        init.read_message(message2[:-1])
    init, resp = _handshake_pair()
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    with pytest.raises(HandshakeError):
        resp.read_message(init.write_message()[:63])


def test_oversized_messages_are_refused() -> None:
    init, resp = _handshake_pair()
    with pytest.raises(HandshakeError):
        resp.read_message(bytes(65536))
    with pytest.raises(LimitExceeded):
        init.write_message(bytes(65535 - 32 + 1))
    assert len(init.write_message(bytes(65535 - 32))) == 65535
    (send, _), (_, recv) = _completed_ciphers()
    with pytest.raises(LimitExceeded):
        send.encrypt_with_ad(b"", bytes(MAX_PLAINTEXT + 1))
    with pytest.raises(DecryptError):
        recv.decrypt_with_ad(b"", bytes(65536))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_low_order_ephemeral_is_rejected(point: bytes) -> None:
    # Responder side: the bad point arrives in message 1 and poisons the ee DH.
    init, resp = _handshake_pair()
    resp.read_message(point + b"payload")
    with pytest.raises(HandshakeError):
        resp.write_message()
    # Initiator side: the bad point arrives as the responder's ephemeral.
    init.write_message()
    with pytest.raises(HandshakeError):
        init.read_message(point + bytes(64))


def test_nonce_limit_and_reserved_value() -> None:
    key = os.urandom(32)
    send, recv = CipherState(key), CipherState(key)
    send.set_nonce(MAX_NONCE - 1)
    recv.set_nonce(MAX_NONCE - 1)
    assert recv.decrypt_with_ad(b"ad", send.encrypt_with_ad(b"ad", b"last")) == b"last"
    assert send.n == MAX_NONCE
    with pytest.raises(ProtocolError):
        send.encrypt_with_ad(b"ad", b"one too many")
    with pytest.raises(ProtocolError):
        recv.decrypt_with_ad(b"ad", bytes(32))


def test_keyless_cipher_passes_through_and_bad_keys_are_refused() -> None:
    empty = CipherState(None)
    assert not empty.has_key()
    assert empty.encrypt_with_ad(b"ad", b"plain") == b"plain"
    with pytest.raises(ValueError):
        CipherState(b"short")
    with pytest.raises(ValueError):
        NoiseHandshake(True, PROLOGUE, b"short")
    with pytest.raises(ValueError):
        NoiseHandshake(True, PROLOGUE, hash_name="SHA512")


def test_default_static_key_is_per_process() -> None:
    a = NoiseHandshake(True, PROLOGUE)
    b = NoiseHandshake(False, PROLOGUE)
    assert a.static_public == b.static_public == NoiseHandshake(True, PROLOGUE, process_static_private()).static_public
    # Sharing a static key is harmless to XX: the session keys still come from fresh ephemerals.
    b.read_message(a.write_message())
    a.read_message(b.write_message())
    b.read_message(a.write_message())
    assert a.remote_static == a.static_public
    (a_send, _), (_, b_recv) = a.split(), b.split()
    assert b_recv.decrypt_with_ad(b"", a_send.encrypt_with_ad(b"", b"same key")) == b"same key"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_its_own_static_key() -> None:
    parent = process_static_private()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its key and leave without running pytest's teardown
        try:
            os.write(write, process_static_private())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != parent
    assert process_static_private() == parent


def test_split_directions_pair_up() -> None:
    (init_send, init_recv), (resp_send, resp_recv) = _completed_ciphers()
    assert resp_recv.decrypt_with_ad(b"", init_send.encrypt_with_ad(b"", b"to responder")) == b"to responder"
    assert init_recv.decrypt_with_ad(b"", resp_send.encrypt_with_ad(b"", b"to initiator")) == b"to initiator"
    with pytest.raises(DecryptError):  # the two directions use different keys
        init_recv.decrypt_with_ad(b"", init_send.encrypt_with_ad(b"", b"loop"))
