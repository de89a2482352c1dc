"""`cocoon-p2p` — the command line. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..errors import CocoonError, find_exception

DESCRIPTION = """\
cocoon-p2p: a peer-to-peer market for private AI inference, paid in TON.

Start here:
  cocoon-p2p keygen                  create this node's identity
  cocoon-p2p node --bootstrap FILE   run a peer (see `cocoon-p2p node --help`)
  cocoon-p2p devnet --peers 5        a local test network on loopback
  cocoon-p2p demo                    the whole path: join, auction, inference, payment
"""


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="node data directory (default: $COCOON_P2P_HOME or ~/.cocoon-p2p)",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import admin_cmds, devnet_cmd, identity_cmds, node_cmd, setup_cmd

    parser = argparse.ArgumentParser(
        prog="cocoon-p2p", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"cocoon-p2p {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (identity_cmds, node_cmd, admin_cmds, devnet_cmd, setup_cmd):
        module.register(sub, add_common)
    for name in ("market_cmds", "client_cmds", "gateway_cmd", "payments_cmds", "demo_cmd"):
        try:
            module = __import__(f"cocoon_p2p.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError:
            continue
        module.register(sub, add_common)
    return parser


def setup_logging(verbose: bool, level: str = "info") -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("hypercorn", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args) or 0
    except (CocoonError, BaseExceptionGroup) as exc:
        error = find_exception(exc, CocoonError)
        if error is None:
            raise
        print(f"cocoon-p2p {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
