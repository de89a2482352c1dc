"""Method tables: which handler answers which RPC method."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..identity import PeerId
    from .connection import Connection
    from .stream import Stream


@dataclass(frozen=True)
class CallContext:
    """Who is calling. The peer id comes from the Noise session, never from the message."""

    peer_id: PeerId
    remote_address: str
    connection: Connection


UnaryHandler = Callable[[CallContext, dict[str, Any]], Awaitable[dict[str, Any]]]
StreamHandler = Callable[[CallContext, dict[str, Any], "Stream"], Awaitable[None]]


class Router:
    def __init__(self) -> None:
        self.unary_handlers: dict[str, UnaryHandler] = {}
        self.stream_handlers: dict[str, StreamHandler] = {}
        self.inline: set[str] = set()
        self.brief: set[str] = set()

    def unary(self, method: str, handler: UnaryHandler, *, inline: bool = False, brief: bool = False) -> None:
        """Register a request/response handler.

        ``inline`` handlers run in the connection's reader task, skipping a task spawn
        per call; use it only for handlers that never wait on the network or a lock
        (a DHT table lookup, a ping), since the connection reads nothing meanwhile.
        ``brief`` marks one-shot queries: a connection that carried nothing but brief
        calls (either way) is closed after ``Limits.brief_idle_timeout`` idle.
        """
        self._check_free(method)
        self.unary_handlers[method] = handler
        if inline:
            self.inline.add(method)
        if brief:
            self.brief.add(method)

    def stream(self, method: str, handler: StreamHandler) -> None:
        self._check_free(method)
        self.stream_handlers[method] = handler

    def _check_free(self, method: str) -> None:
        if method in self.unary_handlers or method in self.stream_handlers:
            raise ValueError(f"RPC method {method!r} is already registered")
