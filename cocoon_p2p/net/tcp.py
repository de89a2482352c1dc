"""Real TCP (IPv4 and IPv6) behind the ``Network`` seam."""

from __future__ import annotations

import socket

import trio

from .base import ConnectionHandler, join_address, split_address
from .socket_stream import TcpSocketStream


class TcpNetwork:
    """Plain TCP with TCP_NODELAY (a small frame should not wait for Nagle), on :class:`TcpSocketStream`."""

    def __init__(self, connect_timeout: float = 10.0) -> None:
        self.connect_timeout = connect_timeout

    async def dial(self, address: str) -> trio.abc.Stream:
        host, port = split_address(address)
        with trio.fail_after(self.connect_timeout):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except trio.TooSlowError:
                raise OSError(f"connect to {address} timed out") from None
        return TcpSocketStream.from_trio(stream)

    async def serve(
        self,
        address: str,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        host, port = split_address(address)
        listeners = await trio.open_tcp_listeners(port, host=host or None, backlog=1024)
        bound = listeners[0].socket.getsockname()
        bound_address = join_address(host or bound[0], bound[1])

        async def on_stream(stream: trio.SocketStream) -> None:
            try:
                peer = stream.socket.getpeername()
                remote = join_address(peer[0], peer[1])
            except OSError:
                await stream.aclose()
                return
            await handler(TcpSocketStream.from_trio(stream), remote)

        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(trio.serve_listeners, on_stream, [listener])
            task_status.started(bound_address)


def is_loopback(address: str) -> bool:
    host, _ = split_address(address)
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        return host == "localhost"
    import ipaddress

    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
