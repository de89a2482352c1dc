"""A peer's network presence: listener, outbound dials, and the connection pool."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..errors import ConnectionClosed, HandshakeError, LimitExceeded, ProtocolError
from ..identity import Identity, PeerId
from ..net import Network
from ..wire.limits import DEFAULT_LIMITS, Limits
from ..wire.secure import secure_stream
from .connection import Connection, Tap
from .router import Router

log = logging.getLogger(__name__)


class Host:
    """Owns every connection task in its own nursery; cancelling ``run`` closes them all."""

    def __init__(
        self,
        identity: Identity,
        network: Network,
        *,
        listen: str = "127.0.0.1:0",
        limits: Limits = DEFAULT_LIMITS,
        router: Router | None = None,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.network = network
        self.listen = listen
        self.limits = limits
        self.router = router or Router()
        self.listen_address: str | None = None
        self.taps: list[Tap] = []
        self.on_connection: list[Callable[[Connection], None]] = []
        self._pool: dict[PeerId, Connection] = {}
        self._dialing: dict[str, trio.Event] = {}
        self._connections: set[Connection] = set()
        self._nursery: trio.Nursery | None = None
        self.handshake_failures = 0

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._close_idle_connections)
            self.listen_address = await nursery.start(self.network.serve, self.listen, self._on_inbound)
            log.debug("%s listening on %s", self.peer_id.short, self.listen_address)
            task_status.started(self.listen_address)

    # --- pool ----------------------------------------------------------------
    def connection_for(self, peer_id: PeerId) -> Connection | None:
        conn = self._pool.get(peer_id)
        return conn if conn is not None and not conn.is_closed else None

    @property
    def connections(self) -> list[Connection]:
        return [c for c in self._connections if not c.is_closed]

    def _register(self, conn: Connection) -> None:
        self._connections.add(conn)
        self._pool[conn.peer_id] = conn

    def _announce(self, conn: Connection) -> None:
        for callback in self.on_connection:
            callback(conn)

    async def _supervise(
        self, conn: Connection, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._register(conn)
        try:
            await conn.run(task_status=task_status)
        finally:
            self._connections.discard(conn)
            if self._pool.get(conn.peer_id) is conn:
                del self._pool[conn.peer_id]

    async def _evict_idle(self) -> bool:
        """Close the least recently used connection with nothing in flight, to make room."""
        idle = [c for c in self._connections if not c.is_closed and c.is_idle]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.last_activity)
        await victim.aclose()
        self._connections.discard(victim)
        if self._pool.get(victim.peer_id) is victim:
            del self._pool[victim.peer_id]
        return True

    async def _close_idle_connections(self) -> None:
        """Close connections quiet for ``idle_timeout`` with nothing in flight
        (``brief_idle_timeout`` for those that carried only brief calls, see Router.unary).

        One sweeper per host rather than a timer task per connection: a busy peer (or a
        simulated swarm) holds thousands of connections, and each task costs memory and
        scheduler time.
        """
        timeout = self.limits.idle_timeout
        brief = min(timeout, self.limits.brief_idle_timeout)
        while True:
            await trio.sleep(min(timeout / 4, brief))
            now = trio.current_time()
            for conn in list(self._connections):
                quiet = conn.idle_for(now)
                if quiet is not None and quiet >= (brief if conn.brief else timeout) and not conn.is_closed:
                    log.debug("closing connection to %s: idle for %.0f s", conn.peer_id.short, quiet)
                    await conn.aclose()

    # --- inbound -------------------------------------------------------------
    async def _on_inbound(self, stream: trio.abc.Stream, remote: str) -> None:
        if len(self._connections) >= self.limits.max_connections and not await self._evict_idle():
            log.warning("refusing %s: %d connections open", remote, len(self._connections))
            await trio.aclose_forcefully(stream)
            return
        try:
            channel = await secure_stream(stream, self.identity, initiator=False, timeout=self.limits.handshake_timeout)
        except ProtocolError as exc:
            self.handshake_failures += 1
            log.debug("inbound handshake from %s failed: %s", remote, exc)
            return
        conn = Connection(
            channel, self.router, outbound=False, remote_address=remote, limits=self.limits, taps=self.taps
        )
        # The network closes the stream when this handler returns, so the connection runs right here,
        # in the handler's own task: a nursery and a supervising task besides would cost every
        # inbound connection about 4 KB and a task spawn (thousands of them in a simulated swarm).
        await self._supervise(conn, task_status=_Announce(self, conn))

    # --- outbound ------------------------------------------------------------
    async def connect(self, address: str, expected: PeerId | None = None) -> Connection:
        """A live connection to ``address`` (reused from the pool when ``expected`` is known).

        Raises ``ConnectionClosed`` when the peer cannot be reached and
        ``PeerIdMismatch`` when it proves another identity than ``expected``.
        """
        if self._nursery is None:
            raise RuntimeError("Host.connect before Host.run started")
        if expected is not None:
            if expected == self.peer_id:
                raise ConnectionClosed("refusing to dial ourselves")
            existing = self.connection_for(expected)
            if existing is not None:
                return existing
        key = f"{address}/{expected}"
        while key in self._dialing:
            await self._dialing[key].wait()
            if expected is not None and (existing := self.connection_for(expected)) is not None:
                return existing
        done = self._dialing[key] = trio.Event()
        try:
            return await self._dial(address, expected)
        finally:
            del self._dialing[key]
            done.set()

    async def _dial(self, address: str, expected: PeerId | None) -> Connection:
        if len(self._connections) >= self.limits.max_connections and not await self._evict_idle():
            raise LimitExceeded(f"{self.limits.max_connections} connections already open and none idle")
        try:
            stream = await self.network.dial(address)
        except OSError as exc:
            raise ConnectionClosed(f"cannot reach {address}: {exc}") from None
        try:
            channel = await secure_stream(
                stream,
                self.identity,
                initiator=True,
                expected_peer_id=expected,
                timeout=self.limits.handshake_timeout,
            )
        except HandshakeError:
            self.handshake_failures += 1
            raise
        conn = Connection(
            channel, self.router, outbound=True, remote_address=address, limits=self.limits, taps=self.taps
        )
        assert self._nursery is not None
        await self._nursery.start(self._supervise, conn)
        self._announce(conn)
        return conn

    async def aclose(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


class _Announce:
    """The task status ``Connection.run`` gets when it runs in the inbound handler's own task:
    once the connection can dispatch, announce it, as ``nursery.start`` returning would."""

    __slots__ = ("_conn", "_host")

    def __init__(self, host: Host, conn: Connection) -> None:
        self._host = host
        self._conn = conn

    def started(self, value: None = None) -> None:
        self._host._announce(self._conn)
