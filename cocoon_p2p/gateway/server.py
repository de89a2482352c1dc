"""Serving the gateway app with hypercorn's trio worker, inside the caller's nursery."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ..client.types import CompletionBackend
from ..net import join_address
from .app import create_app
from .config import GatewayConfig
from .metrics import Metrics


async def serve_gateway(
    backend: CompletionBackend,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    config: GatewayConfig | None = None,
    metrics: Metrics | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the OpenAI-compatible API on ``host:port`` until cancelled.

    Reports the bound port through ``task_status.started`` (the real one when ``port``
    is 0), so ``port = await nursery.start(serve_gateway, backend, "127.0.0.1", 0)``.
    """
    hyper = Config()
    hyper.bind = [join_address(host, port)]
    # Hypercorn writes its own log lines to stderr by default; route them through logging.
    hyper.errorlog = logging.getLogger("hypercorn.error")
    hyper.accesslog = None
    app = create_app(backend, config, metrics=metrics)

    class _PortStatus:
        # hypercorn reports URLs like "http://127.0.0.1:54321"; callers want the port.
        def started(self, binds: list[str] | None = None) -> None:
            bound = (binds or [""])[0]
            task_status.started(int(bound.rpartition(":")[2]))

    await serve(app, hyper, task_status=_PortStatus(), mode="asgi")  # type: ignore[arg-type]
