"""Bidirectional RPC streams with credit-based backpressure.

Each side may send ``window`` items before the receiver grants more credit; the
receiver grants credit as its consumer takes items, so a slow reader holds the
sender without buffering more than one window per stream.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from ..errors import ConnectionClosed, LimitExceeded, ProtocolError, RemoteError

if TYPE_CHECKING:
    from .connection import Connection


class Stream:
    def __init__(self, connection: Connection, stream_id: int, window: int) -> None:
        self._conn = connection
        self.id = stream_id
        self._window = window
        self._send_credit = window
        self._credit_changed = trio.Event()
        self._items: deque[dict[str, Any]] = deque()
        self._item_ready = trio.Event()
        self._consumed_since_grant = 0
        self._remote_ended = False
        self._local_ended = False
        self._error: BaseException | None = None

    # --- called by the user -------------------------------------------------
    async def send(self, item: dict[str, Any]) -> None:
        if self._local_ended:
            raise trio.ClosedResourceError("this stream's sending side was ended")
        while self._send_credit <= 0:
            self._raise_if_failed()
            await self._credit_changed.wait()
        self._raise_if_failed()
        self._send_credit -= 1
        await self._conn._send({"t": "sdata", "id": self.id, "d": item})

    async def receive(self) -> dict[str, Any]:
        while not self._items:
            if self._remote_ended:
                raise trio.EndOfChannel
            self._raise_if_failed()
            self._item_ready = trio.Event()
            await self._item_ready.wait()
        item = self._items.popleft()
        self._consumed_since_grant += 1
        if self._consumed_since_grant >= max(1, self._window // 2):
            grant, self._consumed_since_grant = self._consumed_since_grant, 0
            await self._conn._send({"t": "credit", "id": self.id, "n": grant})
        return item

    async def end(self) -> None:
        """Half-close: tell the remote we send no more items."""
        if not self._local_ended:
            self._local_ended = True
            await self._conn._send({"t": "send", "id": self.id})

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    # --- called by the connection ---------------------------------------------
    def _unreturned_credit(self) -> int:
        """Items taken from the sender's window and not yet granted back (queued or consumed)."""
        if self._remote_ended:
            return 0
        return len(self._items) + self._consumed_since_grant

    def _deliver(self, item: dict[str, Any]) -> None:
        if len(self._items) >= self._window:
            raise LimitExceeded(f"stream {self.id}: peer sent past its credit window")
        self._items.append(item)
        self._item_ready.set()

    def _grant(self, n: int) -> None:
        if n <= 0 or self._send_credit + n > self._window:
            raise ProtocolError(f"stream {self.id}: bad credit grant {n}")
        self._send_credit += n
        self._wake_sender()

    def _remote_end(self) -> None:
        self._remote_ended = True
        self._item_ready.set()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._item_ready.set()
        self._wake_sender()

    def _wake_sender(self) -> None:
        self._credit_changed.set()
        self._credit_changed = trio.Event()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            if isinstance(self._error, (RemoteError, ConnectionClosed)):
                raise self._error
            raise ConnectionClosed(str(self._error))
