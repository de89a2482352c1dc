"""The local admin interface: JSON over HTTP on loopback, bearer-token authenticated.

The node writes ``admin.addr`` and ``admin.token`` (mode 0600) into its data dir;
the CLI reads both, so only the node's own user can drive it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import CocoonError, ConfigError
from ..identity.keystore import write_private_file
from ..net import split_address
from ..net.tcp import is_loopback

log = logging.getLogger(__name__)

ADDR_FILE = "admin.addr"
TOKEN_FILE = "admin.token"

#: An admin command: takes the query parameters, returns a JSON-able dict.
Command = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]


def build_admin_app(token: str, commands: dict[str, Command], metrics: Callable[[], str]) -> Starlette:
    async def dispatch(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "missing or wrong admin token (read it from the data dir)"}, 401)
        name = request.path_params["name"]
        command = commands.get(name)
        if command is None:
            return JSONResponse({"error": f"unknown command {name!r}", "commands": sorted(commands)}, 404)
        try:
            return JSONResponse(await command(dict(request.query_params)))
        except CocoonError as exc:
            return JSONResponse({"error": str(exc)}, 400)

    async def prometheus(request: Request) -> Response:
        return PlainTextResponse(metrics(), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/v1/{name:path}", dispatch), Route("/metrics", prometheus)])


async def serve_admin(
    data_dir: Path,
    listen: str,
    commands: dict[str, Command],
    metrics: Callable[[], str],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    if not is_loopback(listen):
        raise ConfigError(f"admin_listen {listen} is not a loopback address; the admin API must stay local")
    token = secrets.token_hex(24)
    write_private_file(data_dir / TOKEN_FILE, token.encode())
    host, port = split_address(listen)
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("cocoon_p2p.admin.http")
    app = build_admin_app(token, commands, metrics)
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, app, config)  # type: ignore[arg-type]
            address = binds[0].removeprefix("http://")
            write_private_file(data_dir / ADDR_FILE, address.encode())
            log.info("admin interface on http://%s (token in %s)", address, data_dir / TOKEN_FILE)
            task_status.started(address)
    finally:
        # A stale address file would make the CLI talk to whatever takes the port next.
        (data_dir / ADDR_FILE).unlink(missing_ok=True)


def read_admin_endpoint(data_dir: Path) -> tuple[str, str]:
    try:
        address = (data_dir / ADDR_FILE).read_text().strip()
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except OSError:
        raise ConfigError(f"no running node found in {data_dir}; start one with `cocoon-p2p node`") from None
    return address, token
