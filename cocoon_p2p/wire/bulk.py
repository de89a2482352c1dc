"""Sealing and opening application messages as transport frames (docs/PROTOCOL.md §3).

A message is ``u32 BE length || payload`` cut into frames of at most 65519 plaintext
bytes, each sent as ``u16 BE length || ciphertext``. Frames are sealed straight from
the payload's buffer into one wire buffer and opened straight into one message
buffer, so the encryption is the only pass over the bytes.

Big messages go through worker threads (libsodium drops the GIL) in batches of a few
frames, pipelined with the socket: while the event loop sends or reads one batch,
another core seals or opens the next. Nonces are still used strictly in frame order,
because one task seals (or opens) every batch of a message in turn.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

import trio

from ..errors import FramingError
from .limits import MAX_FRAME_PLAINTEXT, NOISE_TAG
from .noise import CipherState, ffi_pointer

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
#: Messages at least this large are sealed/opened in worker threads.
THREAD_CRYPTO_MIN = 256 << 10
#: Frames per thread hop: big enough to amortise the hop, small enough to pipeline.
FRAMES_PER_BATCH = 8


def frame_count(payload_len: int) -> int:
    return -(-(4 + payload_len) // MAX_FRAME_PLAINTEXT)


def seal_frames(cipher: CipherState, payload: bytes, first: int, stop: int) -> bytes | bytearray:
    """Frames ``first..stop-1`` of ``payload``'s message, sealed and length-prefixed."""
    data_len = 4 + len(payload)
    if data_len <= MAX_FRAME_PLAINTEXT:  # one frame, the RPC hot path: no wire buffer to fill
        ciphertext = cipher.encrypt_with_ad(b"", _U32.pack(len(payload)) + payload)
        return _U16.pack(len(ciphertext)) + ciphertext
    wire_len = 0
    for index in range(first, stop):
        wire_len += 2 + NOISE_TAG + min(MAX_FRAME_PLAINTEXT, data_len - index * MAX_FRAME_PLAINTEXT)
    wire = bytearray(wire_len)
    pos = 0
    if first == 0:
        # The length header shares the first frame: the one frame that costs a copy.
        ciphertext = cipher.encrypt_with_ad(b"", _U32.pack(len(payload)) + payload[: MAX_FRAME_PLAINTEXT - 4])
        _U16.pack_into(wire, 0, len(ciphertext))
        wire[2 : 2 + len(ciphertext)] = ciphertext
        pos = 2 + len(ciphertext)
        first = 1
    if first < stop:
        out, src = ffi_pointer(wire), ffi_pointer(payload)
        for index in range(first, stop):
            start = index * MAX_FRAME_PLAINTEXT - 4  # offset in payload
            size = min(MAX_FRAME_PLAINTEXT, len(payload) - start)
            _U16.pack_into(wire, pos, size + NOISE_TAG)
            cipher.encrypt_into(out + pos + 2, src + start, size)
            pos += 2 + size + NOISE_TAG
    return wire


async def _in_pipeline(worker: Callable[[], Awaitable[None]], main: Callable[[], Awaitable[None]]) -> None:
    """Run ``worker`` beside ``main``; the first error from either is raised bare.

    Bare, not in an ExceptionGroup: callers catch ``FramingError`` or
    ``BrokenResourceError`` from a message send or receive like any other.
    """
    failures: list[Exception] = []
    async with trio.open_nursery() as nursery:

        async def guarded(step: Callable[[], Awaitable[None]]) -> None:
            try:
                await step()
            except Exception as exc:
                failures.append(exc)
                nursery.cancel_scope.cancel()

        nursery.start_soon(guarded, worker)
        await guarded(main)
    if failures:
        raise failures[0]


async def send_pipelined(
    cipher: CipherState, payload: bytes, send_all: Callable[[bytes | bytearray], Awaitable[None]]
) -> int:
    """Seal batches in a thread while the previous batch is on its way; returns wire bytes."""
    frames = frame_count(len(payload))
    sealed_send, sealed_receive = trio.open_memory_channel[bytes | bytearray](1)
    sent = 0

    async def seal_batches() -> None:
        async with sealed_send:
            for first in range(0, frames, FRAMES_PER_BATCH):
                stop = min(first + FRAMES_PER_BATCH, frames)
                await sealed_send.send(await trio.to_thread.run_sync(seal_frames, cipher, payload, first, stop))

    async def send_batches() -> None:
        nonlocal sent
        async with sealed_receive:
            async for wire in sealed_receive:
                await send_all(wire)
                sent += len(wire)

    await _in_pipeline(seal_batches, send_batches)
    return sent


def open_frames(cipher: CipherState, plain: bytearray, offset: int, frames: list[bytes]) -> None:
    """Decrypt ``frames`` in order into ``plain`` starting at ``offset``."""
    out = ffi_pointer(plain)
    for frame in frames:
        cipher.decrypt_into(out + offset, ffi_pointer(frame), len(frame))
        offset += len(frame) - NOISE_TAG


async def _next_frame(read_frame: Callable[[], Awaitable[bytes]], have: int, total: int) -> tuple[bytes, int]:
    try:
        frame = await read_frame()
    except trio.EndOfChannel:
        raise FramingError("connection closed in the middle of a message") from None
    if len(frame) <= NOISE_TAG:
        raise FramingError("transport frame without plaintext")
    have += len(frame) - NOISE_TAG
    if have > total:
        raise FramingError("frames carry more bytes than their message")
    return frame, have


async def receive_rest(
    cipher: CipherState, head: bytes, total: int, read_frame: Callable[[], Awaitable[bytes]]
) -> bytes:
    """The frames after a message's first (whose plaintext after the header is ``head``).

    Every frame is checked against the announced length before it is decrypted, so a
    peer cannot make us write past the message buffer.
    """
    plain = bytearray(total)
    plain[: len(head)] = head
    have = len(head)
    if total < THREAD_CRYPTO_MIN:
        frames = []
        while have < total:
            frame, have = await _next_frame(read_frame, have, total)
            frames.append(frame)
        open_frames(cipher, plain, len(head), frames)
        return bytes(plain)

    batches_send, batches_receive = trio.open_memory_channel[tuple[int, list[bytes]]](1)

    async def open_batches() -> None:
        async with batches_receive:
            async for offset, batch in batches_receive:
                await trio.to_thread.run_sync(open_frames, cipher, plain, offset, batch)

    async def read_batches() -> None:
        nonlocal have
        async with batches_send:
            batch: list[bytes] = []
            batch_offset = have
            while have < total:
                frame, have = await _next_frame(read_frame, have, total)
                batch.append(frame)
                if len(batch) == FRAMES_PER_BATCH or have == total:
                    await batches_send.send((batch_offset, batch))
                    batch, batch_offset = [], have

    await _in_pipeline(open_batches, read_batches)
    return bytes(plain)
