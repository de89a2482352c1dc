"""Sans-IO ``Noise_XX_25519_ChaChaPoly_{SHA256,BLAKE2b}`` (Noise spec rev. 34, DESIGN.md §4).

Only the XX pattern is implemented, unrolled by hand: the generic
token-interpreter design costs more Python per handshake than the crypto does,
and XX is the only pattern the wire uses.

The transport's ``CipherState`` lives in ``wire.cipherstate`` (re-exported here);
X25519 and the AEAD are called raw through ``nacl._sodium``, for the reasons given
there.

Bytes from the remote side only ever raise ``ProtocolError`` subclasses; a bad
constructor argument is a local bug and raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from nacl._sodium import lib as _lib

from ..errors import HandshakeError, LimitExceeded
from .cipherstate import (
    _NULL,
    KEY_LEN,
    MAX_MESSAGE,
    MAX_NONCE,
    TAG_LEN,
    CipherState,
    _aead_decrypt,
    _aead_encrypt,
    _alloc,
    _buffer,
    _nonce,
    ffi_pointer,
)

__all__ = ["MAX_MESSAGE", "MAX_NONCE", "CipherState", "NoiseHandshake", "ffi_pointer", "process_static_private"]

DH_LEN = 32
_scalarmult = _lib.crypto_scalarmult
_scalarmult_base = _lib.crypto_scalarmult_base
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _Suite:
    """A hash choice: its HMAC-based HKDF and the protocol's initial h."""

    __slots__ = ("block", "hash", "hashlen")

    def __init__(self, hash_fn: Callable[..., Any], hashlen: int, block: int) -> None:
        self.hash = hash_fn
        self.hashlen = hashlen
        self.block = block

    def hkdf2(self, ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        """HKDF with two outputs; HMAC is inlined because hmac.digest is ~2x slower here."""
        h = self.hash
        bl = self.block
        k = ck.ljust(bl, b"\0")
        temp = h(k.translate(_OPAD) + h(k.translate(_IPAD) + ikm).digest()).digest()
        t = temp.ljust(bl, b"\0")
        ti = t.translate(_IPAD)
        to = t.translate(_OPAD)
        o1 = h(to + h(ti + b"\x01").digest()).digest()
        o2 = h(to + h(ti + o1 + b"\x02").digest()).digest()
        return o1, o2


_SUITES = {
    "SHA256": _Suite(hashlib.sha256, 32, 64),
    "BLAKE2b": _Suite(hashlib.blake2b, 64, 128),
}


@lru_cache(maxsize=32)
def _initial_h(hash_name: str, prologue: bytes) -> tuple[bytes, bytes]:
    """(ck, h) after InitializeSymmetric + MixHash(prologue); prologues repeat, so cache."""
    suite = _SUITES[hash_name]
    name = f"Noise_XX_25519_ChaChaPoly_{hash_name}".encode()
    h = name.ljust(suite.hashlen, b"\0") if len(name) <= suite.hashlen else suite.hash(name).digest()
    return h, suite.hash(h + prologue).digest()


@lru_cache(maxsize=64)
def _public_key(private: bytes) -> bytes:
    # Static keys are reused for every handshake of a process; derive once.
    return _base(private)


def _base(private: bytes) -> bytes:
    out = _alloc("unsigned char[]", DH_LEN)
    if _scalarmult_base(out, private) != 0:
        raise ValueError("invalid X25519 private key")
    return _buffer(out)[:]


def _dh(private: bytes, public: bytes) -> bytes:
    out = _alloc("unsigned char[]", DH_LEN)
    # libsodium returns -1 for small-order points / an all-zero shared secret.
    if _scalarmult(out, private, public) != 0:
        raise HandshakeError("remote key is a low-order point")
    return _buffer(out)[:]


_process_static: bytes | None = None


def process_static_private() -> bytes:
    """This process's Noise static key: random, made on first use, never stored on disk."""
    global _process_static
    if _process_static is None:
        _process_static = os.urandom(DH_LEN)
    return _process_static


def _forget_process_static() -> None:
    global _process_static
    _process_static = None


# Re-key after fork so parent and child never share a static key. A hook rather than a pid
# check on every handshake: os.getpid() is a system call, and a simulated swarm handshakes
# millions of times.
os.register_at_fork(after_in_child=_forget_process_static)


def _check_key(name: str, key: bytes | None) -> None:
    if key is not None and (not isinstance(key, bytes) or len(key) != DH_LEN):
        raise ValueError(f"{name} must be {DH_LEN} bytes")


# Handshake steps: messages 0..2 of XX, then done (3) or dead (-1).
_DONE = 3
_FAILED = -1


class NoiseHandshake:
    """One side of an XX handshake: feed it messages, take messages out.

    ``-> e``, ``<- e, ee, s, es``, ``-> s, se``; the initiator writes messages
    0 and 2, the responder writes message 1. Any failure kills the handshake:
    later calls raise ``HandshakeError``. ``static_private=None`` uses
    ``process_static_private()``; ``ephemeral_private`` exists for test vectors.
    """

    __slots__ = (
        "_ck", "_e", "_h", "_initiator", "_k", "_n", "_re", "_rs", "_s", "_s_pub", "_split_done", "_step", "_suite",
    )  # fmt: skip

    def __init__(
        self,
        initiator: bool,
        prologue: bytes,
        static_private: bytes | None = None,
        *,
        ephemeral_private: bytes | None = None,
        hash_name: str = "SHA256",
    ) -> None:
        suite = _SUITES.get(hash_name)
        if suite is None:
            raise ValueError(f"unsupported Noise hash {hash_name!r}; use one of {sorted(_SUITES)}")
        _check_key("static_private", static_private)
        _check_key("ephemeral_private", ephemeral_private)
        if static_private is None:
            static_private = process_static_private()
        self._suite = suite
        self._ck, self._h = _initial_h(hash_name, bytes(prologue))
        self._initiator = bool(initiator)
        self._s = static_private
        self._s_pub = _public_key(static_private)
        self._e = ephemeral_private
        self._re: bytes | None = None
        self._rs: bytes | None = None
        self._k: bytes | None = None
        self._n = 0
        self._step = 0
        self._split_done = False

    @property
    def complete(self) -> bool:
        return self._step == _DONE

    @property
    def remote_static(self) -> bytes | None:
        return self._rs

    @property
    def static_public(self) -> bytes:
        return self._s_pub

    @property
    def handshake_hash(self) -> bytes:
        """The transcript hash h; a channel binding once ``complete``."""
        return self._h

    # -- symmetric-state steps (kept as small methods; each runs a few times) -----

    def _mix_hash(self, data: bytes) -> None:
        self._h = self._suite.hash(self._h + data).digest()

    def _mix_key(self, dh_out: bytes) -> None:
        self._ck, temp_k = self._suite.hkdf2(self._ck, dh_out)
        self._k = temp_k[:KEY_LEN]
        self._n = 0

    def _encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self._k is None:
            ct = plaintext
        else:
            out = _alloc("unsigned char[]", len(plaintext) + TAG_LEN)
            h = self._h
            _aead_encrypt(out, _NULL, plaintext, len(plaintext), h, len(h), _NULL, _nonce(self._n), self._k)
            self._n += 1
            ct = _buffer(out)[:]
        self._mix_hash(ct)
        return ct

    def _decrypt_and_hash(self, ct: bytes) -> bytes:
        if self._k is None:
            pt = ct
        else:
            # Callers have checked len(ct) >= TAG_LEN.
            out = _alloc("unsigned char[]", len(ct) - TAG_LEN)
            h = self._h
            if _aead_decrypt(out, _NULL, _NULL, ct, len(ct), h, len(h), _nonce(self._n), self._k) != 0:
                raise HandshakeError("Noise handshake message failed authentication")
            self._n += 1
            pt = _buffer(out)[:]
        self._mix_hash(ct)
        return pt

    def write_message(self, payload: bytes = b"") -> bytes:
        """The next handshake message to send, carrying ``payload``."""
        step = self._step
        if step < 0 or step >= _DONE:
            raise HandshakeError("handshake already failed" if step < 0 else "handshake already complete")
        if (step != 1) != self._initiator:
            raise HandshakeError("not this side's turn to write a handshake message")
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        overhead = (DH_LEN, DH_LEN + DH_LEN + 2 * TAG_LEN, DH_LEN + 2 * TAG_LEN)[step]
        if len(payload) + overhead > MAX_MESSAGE:
            raise LimitExceeded(f"handshake payload of {len(payload)} bytes does not fit a Noise message")
        self._step = _FAILED  # restored below only if every step succeeds
        if step == 0:
            out = self._write_e() + self._encrypt_and_hash(payload)
        elif step == 1:
            e = self._write_e()
            self._mix_key(_dh(self._e, self._re))  # ee
            c_s = self._encrypt_and_hash(self._s_pub)
            self._mix_key(_dh(self._s, self._re))  # es (responder side)
            out = e + c_s + self._encrypt_and_hash(payload)
        else:
            c_s = self._encrypt_and_hash(self._s_pub)
            self._mix_key(_dh(self._s, self._re))  # se (initiator side)
            out = c_s + self._encrypt_and_hash(payload)
        self._step = step + 1
        return out

    def read_message(self, message: bytes) -> bytes:
        """Consume the peer's next handshake message; returns its payload."""
        step = self._step
        if step < 0 or step >= _DONE:
            raise HandshakeError("handshake already failed" if step < 0 else "handshake already complete")
        if (step == 1) != self._initiator:
            raise HandshakeError("not this side's turn to read a handshake message")
        if not isinstance(message, bytes):
            message = bytes(message)
        size = len(message)
        minimum = (DH_LEN, DH_LEN + DH_LEN + 2 * TAG_LEN, DH_LEN + 2 * TAG_LEN)[step]
        self._step = _FAILED  # restored below only if the whole message checks out
        if size < minimum:
            raise HandshakeError(f"handshake message {step + 1} is {size} bytes, needs at least {minimum}")
        if size > MAX_MESSAGE:
            raise HandshakeError(f"handshake message of {size} bytes exceeds {MAX_MESSAGE}")
        if step == 0:
            self._re = re = message[:DH_LEN]
            self._mix_hash(re)
            payload = self._decrypt_and_hash(message[DH_LEN:])
        elif step == 1:
            self._re = re = message[:DH_LEN]
            self._mix_hash(re)
            self._mix_key(_dh(self._e, re))  # ee
            end_s = DH_LEN + DH_LEN + TAG_LEN
            self._rs = rs = self._decrypt_and_hash(message[DH_LEN:end_s])
            self._mix_key(_dh(self._e, rs))  # es (initiator side)
            payload = self._decrypt_and_hash(message[end_s:])
        else:
            end_s = DH_LEN + TAG_LEN
            self._rs = rs = self._decrypt_and_hash(message[:end_s])
            self._mix_key(_dh(self._e, rs))  # se (responder side)
            payload = self._decrypt_and_hash(message[end_s:])
        self._step = step + 1
        return payload

    def _write_e(self) -> bytes:
        if self._e is None:
            self._e = os.urandom(DH_LEN)
        e_pub = _base(self._e)
        self._mix_hash(e_pub)
        return e_pub

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) ciphers for this side; callable once, after completion."""
        if self._step != _DONE:
            raise HandshakeError("handshake is not complete")
        if self._split_done:
            # A second pair would restart both nonces at 0 under the same keys.
            raise HandshakeError("split() already called for this handshake")
        self._split_done = True
        k1, k2 = self._suite.hkdf2(self._ck, b"")
        c1 = CipherState(k1[:KEY_LEN])
        c2 = CipherState(k2[:KEY_LEN])
        # Key material no longer needed; drop it so it does not outlive the handshake.
        self._ck = self._k = self._e = None  # type: ignore[assignment]
        return (c1, c2) if self._initiator else (c2, c1)
