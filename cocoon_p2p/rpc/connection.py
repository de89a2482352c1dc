"""One secure connection multiplexing many calls and streams (docs/PROTOCOL.md §4).

Envelope types: ``req``/``res``/``err`` for unary calls, ``sopen``/``sdata``/
``send``/``credit`` for streams, ``cancel`` from the caller to stop a handler.
The dialer numbers its calls with odd ids and the listener with even ids, so both
sides can call each other over the same connection without collisions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..errors import CodecError, ConnectionClosed, ProtocolError, RemoteError
from ..wire import codec
from ..wire.limits import DEFAULT_LIMITS, Limits
from ..wire.secure import SecureChannel
from .envelope import CREDIT, DATA, ERR, envelope, request
from .ratelimit import TokenBucket
from .reply import CallbackReply, Reply
from .router import CallContext, Router
from .stream import Stream

log = logging.getLogger(__name__)

#: Observes every decoded message: (direction "in"/"out", connection, message).
Tap = Callable[[str, "Connection", dict[str, Any]], None]


class Connection:
    def __init__(
        self,
        channel: SecureChannel,
        router: Router,
        *,
        outbound: bool,
        remote_address: str,
        limits: Limits = DEFAULT_LIMITS,
        taps: list[Tap] | None = None,
    ) -> None:
        self.channel = channel
        self.router = router
        self.outbound = outbound
        self.remote_address = remote_address
        self.peer_id = channel.remote_peer_id
        self.limits = limits
        self._taps = taps if taps is not None else []
        self._next_id = 1 if outbound else 2
        self._pending: dict[int, Reply | CallbackReply] = {}
        self._streams: dict[int, Stream] = {}
        self._handlers: dict[int, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = trio.Event()
        self.close_reason: BaseException | None = None
        # Callers beyond the remote's stream limit queue here instead of being refused.
        self._slots = trio.Semaphore(limits.max_streams)
        self._bucket = TokenBucket(limits.requests_per_second, limits.request_burst)
        self.last_activity = trio.current_time()
        #: Nothing but brief calls so far (Router.brief): the host closes it sooner when idle.
        self.brief = True

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def is_idle(self) -> bool:
        return not self._pending and not self._streams and not self._handlers

    # --- lifecycle -----------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read and dispatch until the connection ends; owns the handler tasks."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                try:
                    await self._read_loop()
                except ProtocolError as exc:
                    self.close_reason = exc
                    log.info(
                        "closing connection to %s (%s): %s [%s]", self.peer_id.short, self.remote_address, exc, exc.code
                    )
                nursery.cancel_scope.cancel()
        finally:
            self._shutdown(self.close_reason or ConnectionClosed("connection closed"))
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.channel.stream)

    async def aclose(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(self.channel.stream)
        self._shutdown(ConnectionClosed("connection closed locally"))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _shutdown(self, reason: BaseException) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        err = reason if isinstance(reason, ConnectionClosed) else ConnectionClosed(str(reason))
        # Taken out first: a reply callback may call back into this connection.
        pending, self._pending = self._pending, {}
        for reply in pending.values():
            reply.set(err)
        for stream in self._streams.values():
            stream._fail(err)
        self._streams.clear()

    def idle_for(self, now: float) -> float | None:
        """Seconds without traffic, or None while anything is in flight."""
        return now - self.last_activity if self.is_idle else None

    # --- sending -------------------------------------------------------------
    async def _send(self, msg: dict[str, Any]) -> None:
        if self._closed.is_set():
            raise ConnectionClosed("connection is closed")
        for tap in self._taps:
            tap("out", self, msg)
        payload = codec.pack(msg)
        try:
            # The channel shields the send once a nonce is used, so a cancelled caller never
            # leaves half a frame on the wire. A peer that stops reading blocks us until the
            # connection is closed (the caller's own timeout, or the host's close).
            await self.channel.send_message(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._shutdown(ConnectionClosed(str(exc) or "connection lost"))
            raise ConnectionClosed("connection lost while sending") from None
        self.last_activity = trio.current_time()

    def _send_soon(self, msg: dict[str, Any]) -> None:
        """Fire-and-forget send, for cancellations that must not block the caller."""
        if self._nursery is not None and not self._closed.is_set():
            try:
                self._nursery.start_soon(self._send_quietly, msg)
            except RuntimeError:
                pass  # the connection is shutting down; the remote will see it close instead

    async def _send_quietly(self, msg: dict[str, Any]) -> None:
        try:
            await self._send(msg)
        except ConnectionClosed:
            pass

    def _allocate_id(self) -> int:
        call_id = self._next_id
        self._next_id += 2
        return call_id

    # --- calling -------------------------------------------------------------
    async def call(self, method: str, params: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        if timeout is not None:
            with trio.fail_after(timeout):
                return await self.call(method, params)
        try:
            self._slots.acquire_nowait()  # the common case needs no scheduler round trip
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            return await self._call(method, params)
        finally:
            self._slots.release()

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.brief and method not in self.router.brief:
            self.brief = False
        call_id = self._allocate_id()
        reply = Reply()
        self._pending[call_id] = reply
        done = False
        try:
            await self._send({"t": "req", "id": call_id, "m": method, "p": params})
            outcome = await reply.wait()
            done = True
        finally:
            self._pending.pop(call_id, None)
            if not done:
                self._send_soon({"t": "cancel", "id": call_id})
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def request_nowait(self, method: str, params: dict[str, Any], on_reply: Callable[[Any], None]) -> int | None:
        """Send a unary request without waiting for anything; None when it would have to wait.

        ``on_reply`` later runs once in the read loop with the result map or the exception
        (``RemoteError``, ``ConnectionClosed``); it must not block or raise. There is no
        timeout: the caller keeps its own and calls :meth:`abandon`. Returns the call id.
        None (nothing sent) when every call slot is taken or the channel is busy: use
        :meth:`call`. A lookup asks many peers at once, and a task plus a cancel scope per
        query was a third of its CPU.
        """
        if self._closed.is_set():
            raise ConnectionClosed("connection is closed")
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            return None
        if self.brief and method not in self.router.brief:
            self.brief = False
        call_id = self._allocate_id()
        msg = {"t": "req", "id": call_id, "m": method, "p": params}
        for tap in self._taps:
            tap("out", self, msg)
        try:
            sent = self.channel.send_message_nowait(codec.pack(msg))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._slots.release()
            self._shutdown(ConnectionClosed(str(exc) or "connection lost"))
            raise ConnectionClosed("connection lost while sending") from None
        except BaseException:
            self._slots.release()
            raise
        if not sent:
            self._slots.release()
            return None
        if self.channel.has_backlog and self._nursery is not None:
            try:
                self._nursery.start_soon(self._flush_quietly)
            except RuntimeError:
                pass  # the connection is shutting down; the remote will see it close instead
        self._pending[call_id] = CallbackReply(on_reply, self._slots.release)
        self.last_activity = trio.current_time()
        return call_id

    def abandon(self, call_id: int) -> None:
        """Give up on a :meth:`request_nowait` call: its callback will not run, the peer is told to stop."""
        pending = self._pending.pop(call_id, None)
        if pending is not None:
            pending.drop()
            self._send_soon({"t": "cancel", "id": call_id})

    async def _flush_quietly(self) -> None:
        try:
            await self.channel.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._shutdown(ConnectionClosed(str(exc) or "connection lost"))

    @asynccontextmanager
    async def open_stream(self, method: str, params: dict[str, Any]) -> AsyncIterator[Stream]:
        async with self._slots:
            async with self._open_stream(method, params) as stream:
                yield stream

    @asynccontextmanager
    async def _open_stream(self, method: str, params: dict[str, Any]) -> AsyncIterator[Stream]:
        self.brief = False
        call_id = self._allocate_id()
        stream = Stream(self, call_id, self.limits.stream_window)
        self._streams[call_id] = stream
        finished = False
        try:
            await self._send({"t": "sopen", "id": call_id, "m": method, "p": params})
            yield stream
            finished = stream._remote_ended
        finally:
            self._streams.pop(call_id, None)
            if not finished:
                self._send_soon({"t": "cancel", "id": call_id})

    # --- receiving -----------------------------------------------------------
    async def _read_loop(self) -> None:
        max_message = self.limits.max_message
        while True:
            try:
                raw = await self.channel.receive_message()
            except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            self.last_activity = trio.current_time()
            msg = codec.unpack_map(raw, max_size=max_message)
            for tap in self._taps:
                tap("in", self, msg)
            inline = self._dispatch(msg)
            if inline is not None:
                await self._run_inline(*inline)

    def _dispatch(self, msg: dict[str, Any]) -> tuple[int, str, dict[str, Any]] | None:
        """Handle one message; returns (id, method, params) when an inline handler should run now."""
        kind, call_id = envelope(msg)
        mine = (call_id % 2 == 1) == self.outbound
        if kind in ("req", "sopen"):
            if mine:
                raise ProtocolError("peer opened a call with an id from our half of the id space")
            req = request(msg)
            if self.brief and (kind == "sopen" or req["m"] not in self.router.brief):
                self.brief = False
            if kind == "req" and req["m"] in self.router.inline:
                return call_id, req["m"], req["p"]
            self._start_handler(kind, call_id, req)
        elif kind == "cancel":
            scope = self._handlers.get(call_id)
            if scope is not None:
                scope.cancel()
        elif kind in ("res", "err"):
            self._deliver_result(kind, call_id, msg)
        elif kind in ("sdata", "send", "credit"):
            self._stream_event(kind, call_id, msg)
        else:
            raise CodecError(f"unknown message type {kind!r}")
        return None

    def _deliver_result(self, kind: str, call_id: int, msg: dict[str, Any]) -> None:
        outcome: Any
        if kind == "res":
            outcome = msg.get("r")
            if type(outcome) is not dict:
                raise CodecError("res: field 'r' must be a map")
        else:
            err = ERR.validate(msg)
            outcome = RemoteError(err["c"], err["e"] or "")
        pending = self._pending.pop(call_id, None)
        if pending is not None:
            pending.set(outcome)
            return
        stream = self._streams.get(call_id)
        if stream is not None and isinstance(outcome, RemoteError):
            stream._fail(outcome)
        # A late answer to a call we cancelled is normal; anything else is ignored too.

    def _stream_event(self, kind: str, call_id: int, msg: dict[str, Any]) -> None:
        stream = self._streams.get(call_id)
        if stream is None:
            # The stream ended or was cancelled on our side; late frames are harmless, but an
            # item's credit still goes back, or a sender past its window would wait forever.
            if kind == "sdata":
                self._send_soon({"t": "credit", "id": call_id, "n": 1})
            return
        if kind == "sdata":
            stream._deliver(DATA.validate(msg)["d"])
        elif kind == "send":
            stream._remote_end()
        else:
            stream._grant(CREDIT.validate(msg)["n"])

    def _admit(self, call_id: int) -> bool:
        if call_id in self._handlers:
            raise ProtocolError(f"call id {call_id} reused while still running")
        if len(self._handlers) >= self.limits.max_streams:
            self._send_soon({"t": "err", "id": call_id, "c": "too_many_streams", "e": "try again later"})
            return False
        if not self._bucket.take(trio.current_time()):
            self._send_soon({"t": "err", "id": call_id, "c": "rate_limited", "e": "slow down"})
            return False
        return True

    def _start_handler(self, kind: str, call_id: int, req: dict[str, Any]) -> None:
        assert self._nursery is not None
        if not self._admit(call_id):
            return
        scope = trio.CancelScope()
        self._handlers[call_id] = scope
        stream: Stream | None = None
        if kind == "sopen":
            # Registered now, not when the handler task first runs: the opener may send items
            # right behind ``sopen``, and the read loop can dispatch them before that task starts.
            stream = Stream(self, call_id, self.limits.stream_window)
            self._streams[call_id] = stream
        self._nursery.start_soon(self._run_handler, call_id, req["m"], req["p"], scope, stream)

    async def _run_inline(self, call_id: int, method: str, params: dict[str, Any]) -> None:
        if not self._admit(call_id):
            return
        try:
            result = await self.router.unary_handlers[method](
                CallContext(self.peer_id, self.remote_address, self), params
            )
        except (RemoteError, ProtocolError) as exc:
            await self._send_quietly({"t": "err", "id": call_id, "c": exc.code, "e": getattr(exc, "message", str(exc))})
            return
        except Exception:
            log.exception("handler for %s failed", method)
            await self._send_quietly({"t": "err", "id": call_id, "c": "internal", "e": "handler failed"})
            return
        await self._send_quietly({"t": "res", "id": call_id, "r": result})

    async def _run_handler(
        self, call_id: int, method: str, params: dict[str, Any], scope: trio.CancelScope, stream: Stream | None
    ) -> None:
        ctx = CallContext(self.peer_id, self.remote_address, self)
        try:
            with scope:
                if stream is None:
                    handler = self.router.unary_handlers.get(method)
                    if handler is None:
                        raise RemoteError("unknown_method", method)
                    result = await handler(ctx, params)
                    await self._send({"t": "res", "id": call_id, "r": result})
                else:
                    stream_handler = self.router.stream_handlers.get(method)
                    if stream_handler is None:
                        raise RemoteError("unknown_method", method)
                    await stream_handler(ctx, params, stream)
                    await stream.end()
        except RemoteError as exc:
            await self._send_quietly({"t": "err", "id": call_id, "c": exc.code, "e": exc.message})
        except (ConnectionClosed, trio.EndOfChannel):
            pass
        except ProtocolError as exc:
            await self._send_quietly({"t": "err", "id": call_id, "c": exc.code, "e": str(exc)})
        except Exception:
            log.exception("handler for %s failed", method)
            await self._send_quietly({"t": "err", "id": call_id, "c": "internal", "e": "handler failed"})
        finally:
            self._handlers.pop(call_id, None)
            if stream is not None:
                self._streams.pop(call_id, None)
                unreturned = stream._unreturned_credit()
                if unreturned:
                    self._send_soon({"t": "credit", "id": call_id, "n": unreturned})
