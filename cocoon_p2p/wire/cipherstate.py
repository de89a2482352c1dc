"""One direction of a Noise session (Noise spec rev. 34 §5.1, ``ChaChaPoly``; DESIGN.md §4).

Primitives come straight from the cffi module that ``nacl.bindings`` wraps
(``nacl._sodium``): the public wrappers re-validate every argument and copy
through zeroed buffers, which is ~4 µs of a ~5 µs small-frame encrypt. Every
length those raw calls rely on is guaranteed here instead (keys come from the
handshake's HKDF, nonces from a fixed-width pack, buffers are sized from ``len``).
"""

from __future__ import annotations

import struct
from typing import Any

import nacl.bindings
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from ..errors import DecryptError, LimitExceeded, ProtocolError

__all__ = ["KEY_LEN", "MAX_MESSAGE", "MAX_NONCE", "TAG_LEN", "CipherState", "ffi_pointer"]

MAX_MESSAGE = 65535
TAG_LEN = 16
KEY_LEN = 32
#: Nonce 2^64-1 is reserved by the spec (rekey uses it); using it is an error.
MAX_NONCE = (1 << 64) - 1
_MAX_PLAINTEXT = MAX_MESSAGE - TAG_LEN

# Without sodium_init libsodium keeps its portable reference code: the CPU
# dispatch (SIMD ChaCha20/Poly1305, X25519) happens there. Idempotent.
nacl.bindings.sodium_init()

_NULL = _ffi.NULL
# Output buffers are always fully overwritten by libsodium before we read them,
# so skipping the memset is safe and saves a pass over 64 KiB frames.
_alloc = _ffi.new_allocator(should_clear_after_alloc=False)
_buffer = _ffi.buffer
_aead_encrypt = _lib.crypto_aead_chacha20poly1305_ietf_encrypt
_aead_decrypt = _lib.crypto_aead_chacha20poly1305_ietf_decrypt
_nonce = struct.Struct("<4xQ").pack  # 4 zero bytes || 64-bit LE counter
_ZERO_KEY = bytes(KEY_LEN)


#: A cffi pointer into a bytes-like object, for ``encrypt_into``/``decrypt_into``.
def ffi_pointer(buffer: Any) -> Any:
    return _ffi.from_buffer("unsigned char[]", buffer)


class CipherState:
    """One direction of a Noise session: a key and a message counter."""

    __slots__ = ("_k", "_n")

    def __init__(self, key: bytes | None) -> None:
        if key is not None and (type(key) is not bytes or len(key) != KEY_LEN):
            raise ValueError("CipherState key must be 32 bytes or None")
        self._k = key
        self._n = 0

    @property
    def n(self) -> int:
        """The nonce the next message will use."""
        return self._n

    def has_key(self) -> bool:
        return self._k is not None

    def set_nonce(self, n: int) -> None:
        """Spec ``SetNonce``; only for tests and explicit-nonce protocols."""
        if not 0 <= n <= MAX_NONCE:
            raise ValueError("nonce out of range")
        self._n = n

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        k = self._k
        if k is None:
            return bytes(plaintext)
        n = self._n
        if n >= MAX_NONCE:
            raise ProtocolError("Noise nonce exhausted; the session must be re-established")
        if type(plaintext) is not bytes:
            plaintext = bytes(plaintext)
        if type(ad) is not bytes:
            ad = bytes(ad)
        mlen = len(plaintext)
        if mlen > _MAX_PLAINTEXT:
            raise LimitExceeded(f"Noise message plaintext of {mlen} bytes exceeds {_MAX_PLAINTEXT}")
        out = _alloc("unsigned char[]", mlen + TAG_LEN)
        _aead_encrypt(out, _NULL, plaintext, mlen, ad, len(ad), _NULL, _nonce(n), k)
        self._n = n + 1
        return _buffer(out)[:]

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        k = self._k
        if k is None:
            return bytes(ciphertext)
        n = self._n
        if n >= MAX_NONCE:
            raise ProtocolError("Noise nonce exhausted; the session must be re-established")
        if type(ciphertext) is not bytes:
            ciphertext = bytes(ciphertext)
        if type(ad) is not bytes:
            ad = bytes(ad)
        clen = len(ciphertext)
        if clen < TAG_LEN:
            raise DecryptError("Noise message shorter than its authentication tag")
        if clen > MAX_MESSAGE:
            raise DecryptError(f"Noise message of {clen} bytes exceeds {MAX_MESSAGE}")
        out = _alloc("unsigned char[]", clen - TAG_LEN)
        if _aead_decrypt(out, _NULL, _NULL, ciphertext, clen, ad, len(ad), _nonce(n), k) != 0:
            # The nonce is deliberately not advanced: the spec treats a failed
            # message as never received.
            raise DecryptError("Noise message failed authentication")
        self._n = n + 1
        return _buffer(out)[:]

    def encrypt_into(self, out: Any, plaintext: Any, mlen: int) -> None:
        """Seal ``mlen`` bytes (no AD) from one cffi pointer into another, copy-free.

        ``out`` must have room for ``mlen + 16`` bytes; both are ``ffi.from_buffer``
        pointers (plus an offset) that the caller keeps alive.
        """
        k = self._k
        n = self._n
        if k is None or not 0 < mlen <= _MAX_PLAINTEXT:
            raise ValueError("encrypt_into needs a keyed cipher and 1..65519 bytes")
        if n >= MAX_NONCE:
            raise ProtocolError("Noise nonce exhausted; the session must be re-established")
        _aead_encrypt(out, _NULL, plaintext, mlen, _NULL, 0, _NULL, _nonce(n), k)
        self._n = n + 1

    def decrypt_into(self, out: Any, ciphertext: Any, clen: int) -> None:
        """Open ``clen`` bytes (no AD) at a cffi pointer into ``out`` (``clen - 16`` bytes)."""
        k = self._k
        n = self._n
        if k is None:
            raise ValueError("decrypt_into needs a keyed cipher")
        if n >= MAX_NONCE:
            raise ProtocolError("Noise nonce exhausted; the session must be re-established")
        if not TAG_LEN < clen <= MAX_MESSAGE:
            raise DecryptError(f"Noise message of {clen} bytes is out of range")
        if _aead_decrypt(out, _NULL, _NULL, ciphertext, clen, _NULL, 0, _nonce(n), k) != 0:
            raise DecryptError("Noise message failed authentication")
        self._n = n + 1

    def rekey(self) -> None:
        """Spec ``Rekey``: derive a new key from the old one with the reserved nonce."""
        k = self._k
        if k is None:
            return
        out = _alloc("unsigned char[]", KEY_LEN + TAG_LEN)
        _aead_encrypt(out, _NULL, _ZERO_KEY, KEY_LEN, b"", 0, _NULL, _nonce(MAX_NONCE), k)
        self._k = _buffer(out)[:KEY_LEN]
