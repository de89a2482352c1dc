"""The network seam: everything above this layer gets bytes through a ``Network``.

Real peers plug in :class:`~cocoon_p2p.net.tcp.TcpNetwork`; the simulator plugs an
in-memory network with per-pair latency. Both hand out ``trio.abc.Stream`` objects,
so the protocol code cannot tell them apart.

Addresses are strings ``host:port``; IPv6 hosts are bracketed (``[::1]:9000``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from ..errors import ConfigError

#: Called once per inbound connection with the stream and the remote address.
ConnectionHandler = Callable[[trio.abc.Stream, str], Awaitable[None]]


class Network(Protocol):
    async def dial(self, address: str) -> trio.abc.Stream:
        """Open a byte stream to ``address``; raise ``OSError`` if it cannot be reached."""
        ...

    async def serve(
        self,
        address: str,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections on ``address`` until cancelled.

        Reports the bound address (with the real port when ``address`` asked for
        port 0) through ``task_status.started``. Each connection runs ``handler`` in
        a task of this call's own nursery; the handler owns and closes the stream.
        """
        ...


def split_address(address: str) -> tuple[str, int]:
    """``"1.2.3.4:80"`` or ``"[::1]:80"`` -> (host, port), with a clear error otherwise."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"bad address {address!r}: write host:port, e.g. 127.0.0.1:7400 or [::1]:7400")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"bad address {address!r}: port must be 0-65535")
    return host, port


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
