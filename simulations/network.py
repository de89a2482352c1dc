"""One in-memory network shared by every simulated peer (DESIGN.md §2, §11).

``SimNetwork.endpoint(ip)`` hands each peer its own object implementing the
``cocoon_p2p.net.Network`` seam, so production code runs on it unmodified.

Timing of a dial, with ``d`` the pair's one-way delay:

- ``t0``: the dialer sends its SYN; ``t0 + d``: the SYN reaches the listener's
  host and the accept handler starts; ``t0 + 2d``: ``dial`` returns.
- No listener on that port: ``OSError`` (connection refused) at ``t0 + 2d``.
- Partitioned pair, unknown host or an injected dial failure: the SYN is lost and
  ``dial`` raises ``OSError`` after ``connect_timeout`` (what a real connect does).

A partition also breaks the streams already open across it: both ends get
``BrokenResourceError``.
"""

from __future__ import annotations

import errno
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from cocoon_p2p.net import ConnectionHandler, join_address, split_address

from . import clock
from .latency import ConstantLatency, LatencyModel, quantize
from .streams import HostStats, Pipe, SimStream, Uplink

#: Listen addresses that mean "this host" rather than a specific interface.
_ANY_HOST = frozenset({"", "0.0.0.0", "127.0.0.1", "::", "::1", "localhost"})
_LISTEN_PORTS = 7400
_EPHEMERAL_PORTS = (49152, 65535)


@dataclass
class _Listener:
    endpoint: SimEndpoint
    nursery: trio.Nursery
    handler: ConnectionHandler


class SimConnection:
    """Both directions of one connection, registered so partitions can break it."""

    __slots__ = ("_open_ends", "client", "client_host", "id", "network", "server", "server_host")

    def __init__(
        self,
        network: SimNetwork,
        conn_id: int,
        client: SimEndpoint,
        client_addr: str,
        server: SimEndpoint,
        server_addr: str,
    ) -> None:
        self.network = network
        self.id = conn_id
        self.client_host = client.ip
        self.server_host = server.ip
        latency = network.one_way(client.ip, server.ip)
        up = Pipe(latency, network.window, client.uplink, client.stats, server.stats)
        down = Pipe(latency, network.window, server.uplink, server.stats, client.stats)
        self.client = SimStream(self, up, down, client_addr, server_addr)
        self.server = SimStream(self, down, up, server_addr, client_addr)
        self._open_ends = 2

    def end_closed(self) -> None:
        self._open_ends -= 1
        if self._open_ends == 0:
            self.network._forget(self)

    def break_link(self) -> None:
        for pipe in (self.client._out, self.server._out):
            pipe.broken = True
            pipe.wake_all()
        self.network._forget(self)


class SimEndpoint:
    """One simulated host's view of the network; implements the ``Network`` seam."""

    def __init__(self, network: SimNetwork, ip: str, bandwidth: float | None) -> None:
        self.network = network
        self.ip = ip
        self.stats = HostStats()
        self.uplink = Uplink(bandwidth)
        self._ephemeral = itertools.cycle(range(*_EPHEMERAL_PORTS))
        self._next_listen_port = _LISTEN_PORTS
        # This host's keys in ``network.listeners``, so a crash need not scan every host's.
        self._ports: set[tuple[str, int]] = set()

    def __repr__(self) -> str:
        return f"SimEndpoint({self.ip})"

    def _local_host(self, host: str) -> str:
        return self.ip if host in _ANY_HOST else host

    async def dial(self, address: str) -> trio.abc.Stream:
        host, port = split_address(address)
        host = self._local_host(host)
        net = self.network
        self.stats.dials += 1
        target = net.endpoints.get(host)
        if (
            target is None
            or net.blocked(self.ip, host)
            or (net.dial_failure and net.fail_rng.random() < net.dial_failure)
        ):
            self.stats.dial_failures += 1
            await clock.sleep(net.connect_timeout)
            raise OSError(errno.ETIMEDOUT, f"connect to {address} timed out")
        delay = net.one_way(self.ip, host)
        await clock.sleep(delay)  # SYN on its way
        listener = net.listeners.get((host, port))
        if listener is None or net.blocked(self.ip, host):
            self.stats.dial_failures += 1
            if listener is not None:  # partitioned while the SYN travelled: it is lost
                await clock.sleep(max(0.0, net.connect_timeout - delay))
                raise OSError(errno.ETIMEDOUT, f"connect to {address} timed out")
            await clock.sleep(delay)  # the RST comes back
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {address} refused")
        client_addr = join_address(self.ip, self._free_ephemeral())
        conn = net._connect(self, client_addr, target, join_address(host, port))
        target.stats.accepted += 1
        listener.nursery.start_soon(listener.handler, conn.server, client_addr)
        try:
            await clock.sleep(delay)  # SYN-ACK on its way back
        except BaseException:
            conn.client.close_now()
            raise
        return conn.client

    def _free_ephemeral(self) -> int:
        return next(self._ephemeral)

    async def serve(
        self,
        address: str,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        host, port = split_address(address)
        host = self._local_host(host)
        if host != self.ip:
            raise OSError(errno.EADDRNOTAVAIL, f"{self.ip} cannot listen on {address}")
        net = self.network
        if port == 0:
            while (self.ip, self._next_listen_port) in net.listeners:
                self._next_listen_port += 1
            port = self._next_listen_port
            self._next_listen_port += 1
        key = (self.ip, port)
        if key in net.listeners:
            raise OSError(errno.EADDRINUSE, f"{join_address(self.ip, port)} is already in use")
        async with trio.open_nursery() as nursery:
            listener = _Listener(self, nursery, handler)
            net.listeners[key] = listener
            self._ports.add(key)
            try:
                task_status.started(join_address(self.ip, port))
                await trio.sleep_forever()
            finally:
                if net.listeners.get(key) is listener:
                    del net.listeners[key]
                    self._ports.discard(key)

    def crash(self) -> None:
        """The host's process dies: listeners vanish and the kernel closes its sockets.

        Remote ends then read EOF (after one latency) and get ``BrokenResourceError``
        on their next send. Cancelling the peer's tasks is the caller's job.
        """
        net = self.network
        for key in sorted(self._ports):
            if key in net.listeners and net.listeners[key].endpoint is self:
                del net.listeners[key]
        self._ports.clear()
        for conn in list(net.connections_of(self.ip)):
            end = conn.client if conn.client_host == self.ip else conn.server
            end.close_now()
            if conn.client_host == conn.server_host:
                conn.server.close_now()


class SimNetwork:
    """The shared medium: hosts, listeners, per-pair latency, partitions, counters.

    ``window`` bounds the bytes in flight plus unread per direction (backpressure);
    ``bandwidth`` (bytes/s, per host uplink) adds serialisation delay when set;
    ``dial_failure`` is the probability that a dial's SYN is lost.
    """

    def __init__(
        self,
        latency: LatencyModel | None = None,
        *,
        rng: random.Random | None = None,
        window: int = 1 << 20,
        bandwidth: float | None = None,
        dial_failure: float = 0.0,
        connect_timeout: float = 10.0,
        loopback_latency: float = 0.0,
    ) -> None:
        self.latency = latency or ConstantLatency()
        rng = rng or random.Random(0)
        # Separate streams so adding hosts does not shift the dial-failure draws.
        self.place_rng = random.Random(rng.getrandbits(64))
        self.fail_rng = random.Random(rng.getrandbits(64))
        if window < 1:
            raise ValueError("window must be at least one byte")
        self.window = window
        self.bandwidth = bandwidth
        self.dial_failure = dial_failure
        self.connect_timeout = connect_timeout
        self.loopback_latency = quantize(loopback_latency)
        self.endpoints: dict[str, SimEndpoint] = {}
        self.listeners: dict[tuple[str, int], _Listener] = {}
        self._pair_latency: dict[tuple[str, str], float] = {}
        self._conn_ids = itertools.count(1)
        self._by_host: dict[str, dict[int, SimConnection]] = {}
        self._blocked_pairs: set[tuple[str, str]] = set()
        self._group: dict[str, int] = {}

    # --- hosts -------------------------------------------------------------------
    def endpoint(self, host_ip: str, *, bandwidth: float | None = None) -> SimEndpoint:
        """The ``Network`` for the peer at ``host_ip`` (the same object on every call)."""
        existing = self.endpoints.get(host_ip)
        if existing is not None:
            return existing
        self.latency.register(host_ip, self.place_rng)
        endpoint = SimEndpoint(self, host_ip, bandwidth if bandwidth is not None else self.bandwidth)
        self.endpoints[host_ip] = endpoint
        self._by_host[host_ip] = {}
        return endpoint

    def one_way(self, a: str, b: str) -> float:
        """The fixed one-way delay of a pair, on the virtual-time grid."""
        if a == b:
            return self.loopback_latency
        key = (a, b) if a < b else (b, a)
        delay = self._pair_latency.get(key)
        if delay is None:
            delay = self._pair_latency[key] = quantize(self.latency.one_way(a, b))
        return delay

    def stats(self, host_ip: str) -> HostStats:
        return self.endpoints[host_ip].stats

    def total_stats(self) -> HostStats:
        total = HostStats()
        for endpoint in self.endpoints.values():
            for field in vars(total):
                setattr(total, field, getattr(total, field) + getattr(endpoint.stats, field))
        return total

    # --- connections ---------------------------------------------------------------
    def _connect(self, client: SimEndpoint, client_addr: str, server: SimEndpoint, server_addr: str) -> SimConnection:
        conn = SimConnection(self, next(self._conn_ids), client, client_addr, server, server_addr)
        self._by_host[client.ip][conn.id] = conn
        self._by_host[server.ip][conn.id] = conn
        return conn

    def _forget(self, conn: SimConnection) -> None:
        self._by_host[conn.client_host].pop(conn.id, None)
        self._by_host[conn.server_host].pop(conn.id, None)

    def connections_of(self, host_ip: str) -> Iterable[SimConnection]:
        return self._by_host.get(host_ip, {}).values()

    @property
    def open_connections(self) -> int:
        ids = {cid for conns in self._by_host.values() for cid in conns}
        return len(ids)

    # --- partitions ------------------------------------------------------------------
    def blocked(self, a: str, b: str) -> bool:
        if a == b:
            return False
        if (a, b) in self._blocked_pairs or (b, a) in self._blocked_pairs:
            return True
        ga, gb = self._group.get(a), self._group.get(b)
        return ga is not None and gb is not None and ga != gb

    def block(self, a: str, b: str) -> None:
        """Cut one pair of hosts: new dials time out, open streams between them break."""
        self._blocked_pairs.add((a, b))
        self._break_blocked([a])

    def unblock(self, a: str, b: str) -> None:
        self._blocked_pairs.discard((a, b))
        self._blocked_pairs.discard((b, a))

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the listed hosts into groups that cannot reach each other.

        Hosts left out of every group still reach everyone.
        """
        self._group = {}
        for index, group in enumerate(groups):
            for host in group:
                self._group[host] = index
        self._break_blocked(list(self._group))

    def heal(self) -> None:
        """Lift every partition and blocked pair (broken streams stay broken)."""
        self._group = {}
        self._blocked_pairs.clear()

    def _break_blocked(self, hosts: list[str]) -> None:
        for host in hosts:
            for conn in list(self._by_host.get(host, {}).values()):
                if self.blocked(conn.client_host, conn.server_host):
                    conn.break_link()
