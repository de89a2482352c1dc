"""Secure channels: the XX handshake with identity binding, then framed transport.

Handshake messages and transport messages both travel as ``u16 BE length || bytes``.
An application message is ``u32 BE length || payload`` split across as many
transport frames as it needs (each frame ≤ 65519 bytes of plaintext); a message
always starts at a frame boundary. See docs/PROTOCOL.md §2-§3.
"""

from __future__ import annotations

import struct

import trio

from .. import PROTOCOL_ID
from ..errors import DecryptError, FramingError, HandshakeError, LimitExceeded, PeerIdMismatch, ProtocolError
from ..identity import Identity, PeerId, verify_signature
from . import codec
from .bulk import THREAD_CRYPTO_MIN, frame_count, receive_rest, seal_frames, send_pipelined
from .limits import DEFAULT_LIMITS, NOISE_MAX_MESSAGE, NOISE_TAG
from .noise import CipherState, NoiseHandshake

#: Signed by the identity key, binding it to this process's Noise static key.
IDENTITY_DOMAIN = b"cocoon-p2p-noise-identity:"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_RECV_CHUNK = 1 << 18
#: Messages handed out in a row without waiting before we yield anyway, so a peer that
#: floods us cannot monopolise the event loop.
_YIELD_EVERY = 16


class FrameReader:
    """Buffers a byte stream and hands out whole length-prefixed frames."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._pos = 0
        # Streams that can read without waiting (TcpSocketStream) get the no-wait path.
        self._receive_nowait = getattr(stream, "receive_nowait", None)
        self.wait_readable = getattr(stream, "wait_readable", None)

    def read_frame_nowait(self) -> bytes | None:
        """A whole frame if the buffer or the socket has it right now, else None (bytes kept)."""
        while True:
            buf, pos = self._buf, self._pos
            have = len(buf) - pos
            if have >= 2:
                (length,) = _U16.unpack_from(buf, pos)
                if length == 0:
                    raise FramingError("zero-length frame")
                if have >= 2 + length:
                    self._pos = pos + 2 + length
                    with memoryview(buf) as view:
                        return view[pos + 2 : self._pos].tobytes()
            if self._receive_nowait is None:
                return None
            if pos:
                del buf[:pos]
                self._pos = 0
            data = self._receive_nowait(_RECV_CHUNK)
            if data is None:
                return None
            if not data:
                if buf:
                    raise FramingError("connection closed in the middle of a frame")
                raise trio.EndOfChannel
            buf += data

    async def _fill(self, need: int) -> None:
        while len(self._buf) - self._pos < need:
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            data = await self._stream.receive_some(_RECV_CHUNK)
            if not data:
                if self._buf:
                    raise FramingError("connection closed in the middle of a frame")
                raise trio.EndOfChannel
            self._buf += data

    async def read_frame(self) -> bytes:
        await self._fill(2)
        (length,) = _U16.unpack_from(self._buf, self._pos)
        if length == 0:
            raise FramingError("zero-length frame")
        await self._fill(2 + length)
        start = self._pos + 2
        self._pos = start + length
        with memoryview(self._buf) as view:
            return view[start : self._pos].tobytes()


def _frame(data: bytes) -> bytes:
    if len(data) > NOISE_MAX_MESSAGE:
        raise FramingError("frame larger than 65535 bytes")
    return _U16.pack(len(data)) + data


#: Identity payloads already signed, by (identity key, Noise static key). The static key is
#: the process's own (noise.process_static_private), so each identity signs it once rather
#: than once per handshake; ed25519 signatures are deterministic, so a cached payload is
#: byte for byte the one a fresh signature would give. A simulated swarm runs thousands of
#: identities in one process, hence the bound.
_payloads: dict[tuple[bytes, bytes], bytes] = {}
_PAYLOADS_MAX = 16384


def identity_payload(identity: Identity, noise_static_public: bytes) -> bytes:
    slot = (identity.public_key, noise_static_public)
    payload = _payloads.get(slot)
    if payload is None:
        signature = identity.sign(IDENTITY_DOMAIN + noise_static_public)
        payload = codec.pack({"v": 1, "key": identity.public_key, "sig": signature})
        if len(_payloads) >= _PAYLOADS_MAX:
            _payloads.clear()  # a bound, not an LRU: a forgotten payload is just signed again
        _payloads[slot] = payload
    return payload


def verify_identity_payload(payload: bytes, noise_static_public: bytes) -> bytes:
    """Return the remote ed25519 public key, or raise HandshakeError."""
    msg = codec.unpack(payload, max_size=1024)
    if not isinstance(msg, dict) or msg.get("v") != 1:
        raise HandshakeError("identity payload is not a version-1 map")
    key, sig = msg.get("key"), msg.get("sig")
    if not isinstance(key, bytes) or not isinstance(sig, bytes):
        raise HandshakeError("identity payload lacks key/sig bytes")
    if not verify_signature(key, IDENTITY_DOMAIN + noise_static_public, sig):
        raise HandshakeError("identity signature does not cover the Noise static key")
    return key


class SecureChannel:
    """An authenticated, encrypted message pipe over one byte stream."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        reader: FrameReader,
        send_cipher: CipherState,
        recv_cipher: CipherState,
        remote_public_key: bytes,
        *,
        max_message: int = DEFAULT_LIMITS.max_message,
    ) -> None:
        self.stream = stream
        self._reader = reader
        self._send_cipher = send_cipher
        self._recv_cipher = recv_cipher
        self.remote_public_key = remote_public_key
        self.remote_peer_id = PeerId.from_public_key(remote_public_key)
        self.max_message = max_message
        self._send_lock = trio.StrictFIFOLock()
        # Streams that can send without blocking (TcpSocketStream) let small frames skip the shield.
        self._send_nowait = getattr(stream, "send_nowait", None)
        # The tail of a frame the socket did not take in send_message_nowait: the next
        # sender (or flush) writes it first, so frames keep their nonce order.
        self._backlog: memoryview | None = None
        self._held: tuple[bytes, int] | None = None  # a message's first frame, when more follow
        self._run = 0  # messages returned in a row without waiting (for fairness)
        self.bytes_sent = 0
        self.bytes_received = 0

    def _seal(self, payload: bytes) -> bytes | bytearray:
        return seal_frames(self._send_cipher, payload, 0, frame_count(len(payload)))

    async def send_message(self, payload: bytes) -> None:
        if len(payload) > self.max_message:
            raise LimitExceeded(f"message of {len(payload)} bytes exceeds the {self.max_message} byte limit")
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        # Encrypt under the lock: nonces must reach the wire in the order they were used.
        # Once a nonce is used the frame must go out whole, whatever happens to the caller:
        # half a frame or a skipped nonce would desynchronise the session, hence the shields.
        try:
            await self._write_backlog()
            if len(payload) >= THREAD_CRYPTO_MIN:
                with trio.CancelScope(shield=True):
                    sent = await send_pipelined(self._send_cipher, payload, self.stream.send_all)
            else:
                wire = self._seal(payload)
                sent = self._send_nowait(wire) if self._send_nowait is not None else 0
                if sent < len(wire):
                    with trio.CancelScope(shield=True):
                        await self.stream.send_all(memoryview(wire)[sent:])
                sent = len(wire)
        finally:
            self._send_lock.release()
        self.bytes_sent += sent

    def send_message_nowait(self, payload: bytes) -> bool:
        """Seal and send a small message now, without waiting; False when that is not possible.

        False (nothing sealed, nothing sent) when another send is under way, a tail is
        still queued, the message is large, or the stream cannot send without waiting:
        use :meth:`send_message`. True commits the message; whatever the socket did not
        take waits in a backlog that the next :meth:`send_message` or :meth:`flush`
        writes first (the caller arranges a flush when :attr:`has_backlog`).
        """
        if len(payload) > self.max_message:
            raise LimitExceeded(f"message of {len(payload)} bytes exceeds the {self.max_message} byte limit")
        if self._send_nowait is None or self._backlog is not None or len(payload) >= THREAD_CRYPTO_MIN:
            return False
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            return False
        try:
            wire = self._seal(payload)
            sent = self._send_nowait(wire)
            if sent < len(wire):
                self._backlog = memoryview(wire)[sent:]
        finally:
            self._send_lock.release()
        self.bytes_sent += len(wire)
        return True

    @property
    def has_backlog(self) -> bool:
        return self._backlog is not None

    async def flush(self) -> None:
        """Write out the tail that :meth:`send_message_nowait` left, if any."""
        async with self._send_lock:
            await self._write_backlog()

    async def _write_backlog(self) -> None:
        if self._backlog is not None:
            rest, self._backlog = self._backlog, None
            with trio.CancelScope(shield=True):
                await self.stream.send_all(rest)

    async def receive_message(self) -> bytes:
        """Next whole application message; ``trio.EndOfChannel`` on a clean close."""
        reader = self._reader
        if reader.wait_readable is not None:
            # Most messages fit one frame: take them straight from the socket and park only
            # when it is empty, in one shallow wait; the awaits of the general path made a
            # stack of coroutines per message for the GC to scan on every idle connection.
            while self._held is None:
                frame = reader.read_frame_nowait()
                if frame is not None:
                    message = self._first_frame(frame)
                    if message is not None:
                        self._run += 1
                        if self._run >= _YIELD_EVERY:
                            self._run = 0
                            await trio.lowlevel.cancel_shielded_checkpoint()  # fairness; keeps the message
                        return message
                else:
                    self._run = 0
                    await reader.wait_readable()
        else:
            message = self._first_frame(await reader.read_frame())
            if message is not None:
                return message
        assert self._held is not None
        body, total = self._held
        self._held = None
        return await receive_rest(self._recv_cipher, body, total, self._read_cipher_frame)

    def _first_frame(self, frame: bytes) -> bytes | None:
        """Open a message's first frame: the message if it is whole, else None (held for the rest)."""
        if len(frame) < NOISE_TAG:
            raise FramingError("transport frame shorter than its tag")
        self.bytes_received += len(frame) + 2
        first = self._recv_cipher.decrypt_with_ad(b"", frame)
        if len(first) < 4:
            raise FramingError("first frame of a message is shorter than its length header")
        (total,) = _U32.unpack_from(first, 0)
        if total > self.max_message:
            raise LimitExceeded(f"peer announced a {total} byte message; the limit is {self.max_message}")
        body = first[4:]
        if len(body) >= total:
            if len(body) != total:
                raise FramingError("frame carries more bytes than its message")
            return body
        self._held = (body, total)
        return None

    async def _read_cipher_frame(self) -> bytes:
        frame = await self._reader.read_frame()
        self.bytes_received += len(frame) + 2
        return frame

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _run_handshake(
    stream: trio.abc.Stream, identity: Identity, initiator: bool, expected: PeerId | None
) -> SecureChannel:
    reader = FrameReader(stream)
    hs = NoiseHandshake(initiator, PROTOCOL_ID)
    payload = identity_payload(identity, hs.static_public)

    async def read() -> bytes:
        try:
            return hs.read_message(await reader.read_frame())
        except trio.EndOfChannel:
            raise HandshakeError("peer closed the connection during the handshake") from None

    if initiator:
        await stream.send_all(_frame(hs.write_message(b"")))
        remote_payload = await read()
        remote_key = _check_remote(hs, remote_payload, expected)
        await stream.send_all(_frame(hs.write_message(payload)))
        send, recv = hs.split()
    else:
        first = await read()
        if first:
            raise HandshakeError("the first handshake message must carry no payload")
        await stream.send_all(_frame(hs.write_message(payload)))
        remote_key = _check_remote(hs, await read(), None)
        send, recv = hs.split()
    return SecureChannel(stream, reader, send, recv, remote_key)


def _check_remote(hs: NoiseHandshake, payload: bytes, expected: PeerId | None) -> bytes:
    remote_static = hs.remote_static
    if remote_static is None:
        raise HandshakeError("handshake finished without a remote static key")
    key = verify_identity_payload(payload, remote_static)
    if expected is not None and PeerId.from_public_key(key) != expected:
        raise PeerIdMismatch(f"dialed {expected.short}… but the peer proved {PeerId.from_public_key(key).short}…")
    return key


async def secure_stream(
    stream: trio.abc.Stream,
    identity: Identity,
    *,
    initiator: bool,
    expected_peer_id: PeerId | None = None,
    timeout: float = DEFAULT_LIMITS.handshake_timeout,
) -> SecureChannel:
    """Run the XX handshake; on any failure the stream is closed and a ProtocolError raised."""
    try:
        with trio.fail_after(timeout):
            return await _run_handshake(stream, identity, initiator, expected_peer_id)
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        raise HandshakeError(f"handshake did not finish within {timeout:g} s") from None
    except (ProtocolError, DecryptError):
        await trio.aclose_forcefully(stream)
        raise
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError(f"connection failed during the handshake: {exc}") from None
