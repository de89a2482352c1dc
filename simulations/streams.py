"""In-memory byte streams with latency, bandwidth and a TCP-like window.

No task runs per message or per stream. The sender stamps each chunk with the
virtual time it reaches the other side ("available at") and appends it to a
queue; the receiver sleeps until the head of the queue is due. Order is kept
because stamps never decrease along a pipe. Window credit travels back the same
way: consumed bytes free the sender's window one latency later, so throughput is
bounded by window / RTT exactly as with a real TCP receive window.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .clock import Sleeper, park_until
from .latency import quantize

if TYPE_CHECKING:
    from .network import SimConnection

#: What ``receive_some()`` returns at most when the caller gives no limit.
DEFAULT_RECEIVE = 1 << 18


@dataclass
class HostStats:
    """Traffic counters for one simulated host, across all its streams."""

    bytes_sent: int = 0
    bytes_received: int = 0
    sends: int = 0  # send_all pieces handed to the network
    receives: int = 0  # receive_some calls that returned data
    dials: int = 0
    dial_failures: int = 0
    accepted: int = 0


class Uplink:
    """A host's outgoing link: serialises everything the host sends when capped."""

    __slots__ = ("bytes_per_second", "free_at")

    def __init__(self, bytes_per_second: float | None) -> None:
        self.bytes_per_second = bytes_per_second
        self.free_at = 0.0

    def depart(self, now: float, size: int) -> float:
        """When the last byte of ``size`` bytes handed over at ``now`` leaves the host."""
        if not self.bytes_per_second:
            return now
        start = max(now, self.free_at)
        self.free_at = start + quantize(size / self.bytes_per_second)
        return self.free_at


class Pipe:
    """One direction of a connection. Shared by the sending and receiving stream."""

    __slots__ = (
        "broken",
        "chunks",
        "credits",
        "eof_at",
        "head_offset",
        "last_at",
        "latency",
        "reader",
        "reader_closed_at",
        "receiver_stats",
        "send_lot",
        "sender_stats",
        "unacked",
        "uplink",
        "window",
    )

    def __init__(self, latency: float, window: int, uplink: Uplink, sender: HostStats, receiver: HostStats) -> None:
        self.latency = latency
        self.window = window
        self.uplink = uplink
        self.sender_stats = sender
        self.receiver_stats = receiver
        # Lists, not deques: a few entries at most are queued per direction, and an empty
        # deque costs 760 bytes against 56 (four per connection, ~100,000 connections open
        # at once in a 10,000-peer run).
        self.chunks: list[tuple[float, bytes]] = []
        self.head_offset = 0
        self.last_at = 0.0
        self.eof_at: float | None = None
        self.reader_closed_at: float | None = None
        self.broken = False
        self.unacked = 0
        self.credits: list[tuple[float, int]] = []
        self.reader: Sleeper | None = None  # the receiving task, while it waits
        # Made when a sender first runs out of window, which most connections never do.
        self.send_lot: trio.lowlevel.ParkingLot | None = None

    # --- sender side -----------------------------------------------------------
    def free_window(self, now: float) -> int:
        credits = self.credits
        while credits and credits[0][0] <= now:
            self.unacked -= credits.pop(0)[1]
        return self.window - self.unacked

    async def wait_for_credit(self) -> None:
        # Wake at the next credit already on its way, or when the reader consumes.
        deadline = self.credits[0][0] if self.credits else math.inf
        with trio.move_on_at(deadline):
            if self.send_lot is None:
                self.send_lot = trio.lowlevel.ParkingLot()
            await self.send_lot.park()

    def push(self, now: float, data: bytes) -> None:
        size = len(data)
        self.sender_stats.bytes_sent += size
        self.sender_stats.sends += 1
        if self.reader_closed_at is not None:
            return  # the far end is gone but we cannot know yet: the bytes vanish
        arrive = max(self.uplink.depart(now, size) + self.latency, self.last_at)
        self.last_at = arrive
        self.unacked += size
        was_empty = not self.chunks
        self.chunks.append((arrive, data))
        # A reader parked on a non-empty queue already waits for an earlier chunk.
        if was_empty and self.reader is not None:
            self.reader.wake()

    def send_eof(self, now: float) -> None:
        if self.eof_at is None:
            self.eof_at = max(now + self.latency, self.last_at)
            if self.reader is not None:
                self.reader.wake()

    # --- receiver side ---------------------------------------------------------
    def due(self) -> float:
        """When the receiver next has something to return (data or EOF)."""
        if self.chunks:
            return self.chunks[0][0]
        return self.eof_at if self.eof_at is not None else math.inf

    def pop(self, now: float, limit: int) -> bytes:
        out: list[bytes] = []
        size = 0
        chunks = self.chunks
        while chunks and size < limit and chunks[0][0] <= now:
            data = chunks[0][1]
            start = self.head_offset
            take = min(len(data) - start, limit - size)
            out.append(data[start : start + take] if start or take < len(data) else data)
            if start + take == len(data):
                chunks.pop(0)
                self.head_offset = 0
            else:
                self.head_offset = start + take
            size += take
        stats = self.receiver_stats
        stats.bytes_received += size
        stats.receives += 1
        credits = self.credits
        credit_at = now + self.latency
        if credits and credits[-1][0] == credit_at:
            credits[-1] = (credit_at, credits[-1][1] + size)
        else:
            credits.append((credit_at, size))
            # A sender waiting with credits pending already wakes at the first one.
            if len(credits) == 1 and self.send_lot:  # None or empty: nobody waits
                self.send_lot.unpark_all()
        return b"".join(out) if len(out) != 1 else out[0]

    def close_reader(self, now: float) -> None:
        self.reader_closed_at = now
        self.chunks.clear()
        self.head_offset = 0
        self.credits.clear()
        self.unacked = 0
        self.wake_all()

    def wake_all(self) -> None:
        if self.reader is not None:
            self.reader.wake()
        if self.send_lot is not None:
            self.send_lot.unpark_all()


class SimStream(trio.abc.Stream):
    """One end of a simulated connection; behaves like a ``trio.SocketStream``.

    - ``receive_some`` returns ``b""`` once the remote closed and its data is read.
    - Sending on a stream we closed raises ``ClosedResourceError``; sending after the
      remote closed raises ``BrokenResourceError`` once that news could have arrived
      (one latency later); bytes sent before that are silently lost, as with TCP.
    - A broken link (partition) raises ``BrokenResourceError`` on both ends.
    """

    def __init__(self, conn: SimConnection, outgoing: Pipe, incoming: Pipe, local: str, remote: str) -> None:
        self._conn = conn
        self._out = outgoing
        self._in = incoming
        self.local_address = local
        self.remote_address = remote
        self._closed = False
        self._sending = False
        self._receiving = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_send(self, now: float) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        out = self._out
        if out.broken:
            raise trio.BrokenResourceError("connection reset (link broken)")
        if out.reader_closed_at is not None and now >= out.reader_closed_at + out.latency:
            raise trio.BrokenResourceError("connection reset by peer")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            payload = bytes(data)  # the caller may reuse its buffer once we return
            pos, total = 0, len(payload)
            out = self._out
            while True:
                now = trio.current_time()
                self._check_send(now)
                if pos >= total:
                    return
                free = out.free_window(now)
                if free <= 0:
                    await out.wait_for_credit()
                    continue
                piece = payload[pos : pos + free] if pos or free < total else payload
                pos += len(piece)
                out.push(now, piece)
        finally:
            self._sending = False

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """What the window takes right now, without waiting (TcpSocketStream's fast path)."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        now = trio.current_time()
        self._check_send(now)
        take = min(self._out.free_window(now), len(data))
        if take <= 0:
            return 0
        self._out.push(now, bytes(data[:take]))
        return take

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            while True:
                now = trio.current_time()
                self._check_send(now)
                if self._out.free_window(now) > 0:
                    return
                await self._out.wait_for_credit()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            limit = DEFAULT_RECEIVE
        else:
            limit = operator.index(max_bytes)  # TypeError for floats, as trio's streams do
            if limit < 1:
                raise ValueError("max_bytes must be >= 1")
        await self.wait_readable()  # checkpoints, and raises if the stream closed or broke meanwhile
        data = self.receive_nowait(limit)
        assert data is not None  # wait_readable returns only once something is due
        return data

    def _check_receive(self) -> None:
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if self._in.broken:
            raise trio.BrokenResourceError("connection reset (link broken)")

    def receive_nowait(self, max_bytes: int) -> bytes | None:
        """What has arrived by now (``b""`` at end of stream), or None (TcpSocketStream's fast path)."""
        self._check_receive()
        incoming = self._in
        now = trio.current_time()
        if incoming.due() > now:
            return None
        return incoming.pop(now, max_bytes) if incoming.chunks else b""

    async def wait_readable(self) -> None:
        """Park until something has arrived (data or end of stream)."""
        self._check_receive()
        self._receiving = True
        try:
            incoming = self._in
            parked = False
            while True:
                now = trio.current_time()
                due = incoming.due()
                if due <= now:
                    if not parked:
                        await trio.lowlevel.checkpoint()
                    break
                incoming.reader = sleeper = Sleeper()
                try:
                    await park_until(due, sleeper)
                finally:
                    incoming.reader = None
                parked = True
                if self._closed or incoming.broken:
                    break
        finally:
            self._receiving = False
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if self._in.broken:
            raise trio.BrokenResourceError("connection reset (link broken)")

    async def aclose(self) -> None:
        # Close first: aclose must close even when the checkpoint is cancelled.
        self.close_now()
        await trio.lowlevel.checkpoint()

    def close_now(self) -> None:
        """Synchronous close (FIN after queued data); used for aborts and crashes."""
        if self._closed:
            return
        self._closed = True
        now = trio.current_time()
        self._out.send_eof(now)
        self._out.wake_all()  # our own blocked sender must see ClosedResourceError
        self._in.close_reader(now)
        self._conn.end_closed()
