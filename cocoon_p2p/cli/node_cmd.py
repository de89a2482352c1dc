"""`node`: the long-running peer daemon."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ..errors import ConfigError, find_exception
from ..identity import load_or_create_identity
from ..identity.keystore import ensure_data_dir
from ..node.bootstrap import load_bootstrap_file
from ..node.config import load_config

log = logging.getLogger("cocoon_p2p.node")

NODE_HELP = """\
Run a cocoon-p2p peer until Ctrl-C (SIGINT) or SIGTERM.

Settings come from, in rising priority: defaults, <data dir>/config.toml (or --config),
COCOON_P2P_<SETTING> environment variables, and these flags. Example config.toml:

  listen = "0.0.0.0:7400"
  advertise = "203.0.113.7:7400"
  bootstrap = "/etc/cocoon-p2p/bootstrap.txt"
  roles = ["worker"]
  [worker]
  models = ["default"]
  price_prompt = 20000000        # nanoTON per 1M prompt tokens
  price_completion = 60000000    # nanoTON per 1M completion tokens

Roles: bootstrap (routing only), worker (sells inference), client (buys it).
"""


GATEWAY_HELP = """\
Run a client peer with the OpenAI-compatible API on localhost, until Ctrl-C.

  cocoon-p2p gateway --bootstrap bootstrap/bootstrap.txt --port 8000
  export OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=unused

Every request is auctioned among the workers serving the model; the answer carries the
winning worker and the price in a "cocoon" field. Takes every `node` setting as well.
"""


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    node = sub.add_parser(
        "node", help="run a peer daemon", description=NODE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_node_arguments(node, add_common)
    node.set_defaults(handler=cmd_node)
    gateway = sub.add_parser(
        "gateway",
        help="run a client peer with an OpenAI-compatible API",
        description=GATEWAY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_node_arguments(gateway, add_common)
    gateway.add_argument("--port", type=int, default=8000, help="gateway port on 127.0.0.1 (default 8000)")
    gateway.set_defaults(handler=cmd_gateway)


def cmd_gateway(args: argparse.Namespace) -> int:
    args.roles = args.roles or "client"
    args.gateway_listen = args.gateway_listen or f"127.0.0.1:{args.port}"
    if args.listen is None:
        args.listen = "127.0.0.1:0"
    return cmd_node(args)


def add_node_arguments(node: argparse.ArgumentParser, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    add_common(node)
    node.add_argument("--config", type=Path, help="TOML config file (default: <data dir>/config.toml)")
    node.add_argument("--listen", help="host:port to accept peers on (default 127.0.0.1:7400)")
    node.add_argument("--advertise", help="host:port other peers should dial (needed with a 0.0.0.0 listen)")
    node.add_argument("--bootstrap", type=Path, help="bootstrap list file (see bootstrap/README.md)")
    node.add_argument("--role", dest="roles", help="comma-separated roles: bootstrap, worker, client")
    node.add_argument("--model", dest="models", action="append", help="GGUF to serve (worker; 'default' = demo model)")
    node.add_argument("--price-prompt", type=int, help="worker price, nanoTON per 1M prompt tokens")
    node.add_argument("--price-completion", type=int, help="worker price, nanoTON per 1M completion tokens")
    node.add_argument("--max-concurrent", type=int, help="worker: jobs served at once")
    node.add_argument("--chain", help="host:port of a `cocoon-p2p chain` service (enables payments)")
    node.add_argument("--gateway-listen", help="client role: serve the OpenAI-compatible API on host:port")
    node.add_argument(
        "--rfq-transport",
        choices=["gossip", "direct"],
        help="how RFQs reach workers: gossip on the model topic (default) or direct RPC to offering workers",
    )
    node.add_argument("--admin-listen", help="loopback host:port of the admin API (default: any free port)")
    node.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    top = {
        k: getattr(args, k)
        for k in (
            "listen",
            "advertise",
            "bootstrap",
            "roles",
            "chain",
            "admin_listen",
            "log_level",
            "gateway_listen",
            "rfq_transport",
        )
    }
    worker = {
        "models": args.models,
        "price_prompt": args.price_prompt,
        "price_completion": args.price_completion,
        "max_concurrent": args.max_concurrent,
    }
    top["worker"] = {k: v for k, v in worker.items() if v is not None}
    return {k: v for k, v in top.items() if v is not None}


def cmd_node(args: argparse.Namespace) -> int:
    config = load_config(config_file=args.config, data_dir=args.data_dir, overrides=_overrides(args))
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else config.log_level.upper())
    if config.bootstrap is not None:
        load_bootstrap_file(config.bootstrap)  # a typo in the list should fail now, not after start-up
    ensure_data_dir(config.data_dir)
    identity = load_or_create_identity(config.data_dir)
    from ..node.runner import build_peer

    async def main() -> None:
        peer = build_peer(config, identity)
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received %s: shutting down", signal.Signals(signum).name)
                    with trio.move_on_after(12):  # bounded: the devnet kills a peer 15 s after SIGTERM
                        await peer.prepare_stop()
                    nursery.cancel_scope.cancel()
                    break
        log.info("peer %s stopped cleanly", identity.peer_id.short)

    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as exc:
        bind_error = find_exception(exc, OSError)
        if not isinstance(bind_error, OSError):
            raise
        raise ConfigError(
            f"cannot listen on {config.listen}: {bind_error.strerror or bind_error}; pick another --listen"
        ) from None
    return 0
