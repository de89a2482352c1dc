"""The OpenAI-compatible HTTP app in front of a :class:`CompletionBackend`.

Routes: ``GET /v1/models``, ``GET /v1/models/{model}``, ``POST /v1/chat/completions``,
``POST /v1/completions``, ``GET /health``, ``GET /metrics``. Every error, including
unknown paths and wrong methods, is answered in OpenAI's error shape.

The app needs a trio event loop (the completion endpoints open trio nurseries):
serve it with :func:`~cocoon_p2p.gateway.server.serve_gateway`, or any ASGI server
running anyio on trio.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..client.types import BackendError, CompletionBackend
from . import openai_format as fmt
from .completion import CompletionEndpoint, GatewayContext, find_listing
from .config import GatewayConfig
from .errors import ApiError, from_backend, internal, model_not_found
from .metrics import Metrics, MetricsMiddleware

log = logging.getLogger(__name__)


def create_app(
    backend: CompletionBackend, config: GatewayConfig | None = None, *, metrics: Metrics | None = None
) -> Starlette:
    ctx = GatewayContext(backend=backend, config=config or GatewayConfig(), metrics=metrics or Metrics())

    async def list_models(request: Request) -> Response:
        try:
            listings = await backend.list_models()
        except BackendError as exc:
            return _backend_failure(ctx, exc)
        return JSONResponse({"object": "list", "data": [fmt.model_object(listing) for listing in listings]})

    async def get_model(request: Request) -> Response:
        model = request.path_params["model"]
        try:
            listing = await find_listing(backend, model)
        except BackendError as exc:
            return _backend_failure(ctx, exc)
        if listing is None:
            return _error(model_not_found(model))
        return JSONResponse(fmt.model_object(listing))

    async def health(request: Request) -> Response:
        # Liveness of the gateway only: asking the backend would make probes pay for a DHT walk.
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(request: Request) -> Response:
        return PlainTextResponse(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code)
        return _error(error, headers=exc.headers)

    async def crash(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(internal())

    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", CompletionEndpoint(ctx, chat=True), methods=["POST"]),
        Route("/v1/completions", CompletionEndpoint(ctx, chat=False), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(MetricsMiddleware, metrics=ctx.metrics)],
        exception_handlers={HTTPException: http_error, Exception: crash},
    )
    app.state.gateway = ctx
    return app


def _error(error: ApiError, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _backend_failure(ctx: GatewayContext, exc: BackendError) -> Response:
    ctx.metrics.record_backend_error(exc.code)
    log.info("model listing failed: %s", exc)
    return _error(from_backend(exc))
