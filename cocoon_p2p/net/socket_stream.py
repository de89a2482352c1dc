"""A lean ``trio.abc.HalfCloseableStream`` over a non-blocking stdlib TCP socket.

``trio.SocketStream`` yields to the scheduler after every send and receive, even one
that completed at once; on an RPC round trip that is four scheduler passes (with an
``epoll`` call each) that do nothing. This stream tries the socket first and only
parks the task when the kernel says it would block. So that a peer flooding us cannot
monopolise the event loop, it still yields after ``YIELD_EVERY`` operations in a row
that did not block.
"""

from __future__ import annotations

import errno
import socket

import trio

#: Successful operations in a row before we yield anyway (fairness).
YIELD_EVERY = 16
_DEFAULT_RECEIVE = 1 << 16


class TcpSocketStream(trio.abc.HalfCloseableStream):
    """Owns ``sock`` (already connected); closes it on :meth:`aclose`."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not a TCP socket (a socketpair in tests); Nagle does not apply
        self.socket = sock
        self._closed = False
        self._sending = False
        self._receiving = False
        self._run = 0

    @classmethod
    def from_trio(cls, stream: trio.SocketStream) -> TcpSocketStream:
        """Take over the descriptor of a connected ``trio.SocketStream``."""
        trio_sock = stream.socket
        family, kind, proto = trio_sock.family, trio_sock.type, trio_sock.proto
        return cls(socket.socket(family, kind, proto, fileno=trio_sock.detach()))

    async def _fair(self) -> None:
        self._run += 1
        if self._run >= YIELD_EVERY:
            self._run = 0
            # Shielded: the bytes already moved, so a cancellation here must not lose them.
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            with memoryview(data) as view:
                sent = 0
                total = len(view)
                while sent < total:
                    try:
                        sent += self.socket.send(view[sent:])
                        continue
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        raise _broken(exc) from exc
                    self._run = 0
                    await trio.lowlevel.wait_writable(self.socket)
                    self._check_open()
            if total == 0:
                await trio.lowlevel.checkpoint()
            else:
                await self._fair()
        finally:
            self._sending = False

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the kernel takes right now without blocking; return the byte count.

        Lets a caller that must not be interrupted mid-frame skip a cancel shield when
        the whole frame fits the socket buffer, which is the common case.
        """
        self._check_open()
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _broken(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self.socket)

    async def send_eof(self) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise _broken(exc) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            size = _DEFAULT_RECEIVE if max_bytes is None else max_bytes
            if size < 1:
                raise ValueError("max_bytes must be >= 1")
            while True:
                try:
                    data = self.socket.recv(size)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise _broken(exc) from exc
                else:
                    await self._fair()
                    return data
                # Parked outside the except clause: waiting inside it would keep the
                # BlockingIOError and its traceback alive on every idle connection.
                self._run = 0
                await trio.lowlevel.wait_readable(self.socket)
                self._check_open()
        finally:
            self._receiving = False

    def receive_nowait(self, max_bytes: int) -> bytes | None:
        """What the socket holds right now (``b""`` at end of stream), or None if it would block."""
        self._check_open()
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        try:
            return self.socket.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _broken(exc) from exc

    async def wait_readable(self) -> None:
        """Park until the socket has bytes (or end of stream) to read."""
        self._check_open()
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            self._run = 0
            await trio.lowlevel.wait_readable(self.socket)
        finally:
            self._receiving = False
        self._check_open()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # Wakes any task parked in wait_readable/wait_writable with ClosedResourceError.
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()


def _broken(exc: OSError) -> trio.BrokenResourceError:
    return trio.BrokenResourceError(f"socket connection broken: {exc}")
