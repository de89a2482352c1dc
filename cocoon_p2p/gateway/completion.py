"""``POST /v1/chat/completions`` and ``POST /v1/completions`` as raw ASGI apps.

They are ASGI apps rather than Starlette endpoints returning a StreamingResponse so
that the whole job (auction, session, token stream, payment) runs in the request's
own task: entering the backend's context manager may open trio nurseries, which must
not be split across an async generator and the response task. It also lets the
HTTP status wait for the auction: a stream that fails before its first token still
gets a proper 4xx/5xx, and only later failures become an SSE error event.

Each job is cancelled when the client disconnects, so nobody pays for tokens that
no one reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import trio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from ..client.types import BackendError, CompletionBackend, CompletionRequest, CompletionResult, ModelListing
from . import openai_format as fmt
from .config import GatewayConfig
from .errors import ApiError, from_backend, internal, invalid, model_not_found
from .metrics import Metrics
from .validation import ParsedCompletion, parse_chat, parse_completion, parse_json_body

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
#: Bodies up to this many times the limit are read to the end before the 413 (see _read_body).
_DRAIN_FACTOR = 8
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # keeps reverse proxies from sitting on tokens
]


@dataclass(frozen=True)
class GatewayContext:
    backend: CompletionBackend
    config: GatewayConfig
    metrics: Metrics


async def find_listing(backend: CompletionBackend, model: str) -> ModelListing | None:
    for listing in await backend.list_models():
        if listing.model == model:
            return listing
    return None


async def send_error(scope: Scope, receive: Any, send: Any, error: ApiError) -> None:
    await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)


class CompletionEndpoint:
    def __init__(self, context: GatewayContext, *, chat: bool) -> None:
        self.ctx = context
        self.chat = chat

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            parsed = await self._parse(Request(scope, receive))
            request = await self._fit_to_model(parsed.request)
        except ClientDisconnect:
            return
        except BackendError as exc:
            self.ctx.metrics.record_backend_error(exc.code)
            await send_error(scope, receive, send, from_backend(exc))
            return
        except ApiError as exc:
            await send_error(scope, receive, send, exc)
            return
        job = _Job(self.ctx, request, parsed.include_usage, fmt.ResponseShape.new(
            request.model, self.chat, self.ctx.config.wall_clock()))
        self.ctx.metrics.in_flight += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                if request.stream:
                    await job.stream(scope, receive, send)
                else:
                    await job.whole(scope, receive, send)
                nursery.cancel_scope.cancel()
        finally:
            self.ctx.metrics.in_flight -= 1

    async def _parse(self, request: Request) -> ParsedCompletion:
        body = parse_json_body(await _read_body(request, self.ctx.config.max_body_bytes))
        return parse_chat(body, self.ctx.config) if self.chat else parse_completion(body, self.ctx.config)

    async def _fit_to_model(self, request: CompletionRequest) -> CompletionRequest:
        listing = await find_listing(self.ctx.backend, request.model)
        if listing is None:
            raise model_not_found(request.model)
        if request.max_tokens is None:
            return replace(request, max_tokens=min(self.ctx.config.default_max_tokens, listing.context_length))
        if request.max_tokens > listing.context_length:
            raise invalid(f"max_tokens is {request.max_tokens}, above the context length of {request.model} "
                          f"({listing.context_length})", "max_tokens", "context_length_exceeded")
        return request


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, f"request body is larger than {limit} bytes", code="request_too_large")
    # Answering while the client still uploads makes the server close with unread data,
    # which resets the connection before the client reads the 413; so a body somewhat
    # over the limit is read to the end and dropped, and only a huge one is cut short.
    drain_limit = _DRAIN_FACTOR * limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > drain_limit:
        raise too_large
    body = bytearray()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > drain_limit:
            raise too_large
        if received <= limit:
            body += chunk
    if received > limit:
        raise too_large
    return bytes(body)


async def _cancel_on_disconnect(receive: Any, scope: trio.CancelScope) -> None:
    # The body is consumed by now, so the next message can only be the disconnect.
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


def _as_backend_error(exc: Exception) -> BackendError | None:
    """A BackendError, possibly wrapped in exception groups by the backend's nurseries."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, ExceptionGroup):
        matched, rest = exc.split(BackendError)
        if matched is not None and rest is None:
            while isinstance(matched, ExceptionGroup):
                matched = matched.exceptions[0]
            return matched if isinstance(matched, BackendError) else None
    return None


class _Job:
    def __init__(self, ctx: GatewayContext, request: CompletionRequest, include_usage: bool,
                 shape: fmt.ResponseShape) -> None:
        self.ctx = ctx
        self.request = request
        self.include_usage = include_usage
        self.shape = shape

    def _api_error(self, exc: Exception) -> ApiError:
        backend_error = _as_backend_error(exc)
        if backend_error is not None:
            self.ctx.metrics.record_backend_error(backend_error.code)
            log.info("job for %s failed: %s", self.request.model, backend_error)
            return from_backend(backend_error)
        self.ctx.metrics.record_backend_error("internal_error")
        log.exception("backend crashed serving %s", self.request.model)
        return internal()

    async def whole(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            async with self.ctx.backend.stream_completion(self.request) as stream:
                async for _ in stream:
                    pass
                result = stream.result
        except Exception as exc:
            await send_error(scope, receive, send, self._api_error(exc))
            return
        self.ctx.metrics.record_job(result)
        await JSONResponse(fmt.full_response(self.shape, result))(scope, receive, send)

    async def stream(self, scope: Scope, receive: Any, send: Any) -> None:
        sse = _SseWriter(send)
        try:
            async with self.ctx.backend.stream_completion(self.request) as stream:
                async for delta in stream:
                    if delta.text:
                        await self._open(sse)
                        await sse.event(fmt.text_chunk(self.shape, delta.text))
                result = stream.result
        except Exception as exc:
            error = self._api_error(exc)
            if sse.started:
                await sse.error(error)
            else:
                await send_error(scope, receive, send, error)
            return
        await self._finish(sse, result)

    async def _open(self, sse: _SseWriter) -> None:
        if not sse.started:
            await sse.start()
            if self.shape.chat:
                await sse.event(fmt.role_chunk(self.shape))

    async def _finish(self, sse: _SseWriter, result: CompletionResult) -> None:
        self.ctx.metrics.record_job(result)
        await self._open(sse)
        await sse.event(fmt.finish_chunk(self.shape, result, final=not self.include_usage))
        if self.include_usage:
            await sse.event(fmt.usage_chunk(self.shape, result))
        await sse.done()


class _SseWriter:
    def __init__(self, send: Any) -> None:
        self._send = send
        self.started = False

    async def start(self) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

    async def event(self, data: dict[str, Any]) -> None:
        await self._body(b"data: " + _dumps(data) + b"\n\n")

    async def error(self, error: ApiError) -> None:
        # No [DONE] after an error, so a client cannot mistake a cut-off answer for a whole one.
        await self._body(b"event: error\ndata: " + _dumps(error.body()) + b"\n\n", more=False)

    async def done(self) -> None:
        await self._body(b"data: [DONE]\n\n", more=False)

    async def _body(self, data: bytes, *, more: bool = True) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": more})


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
