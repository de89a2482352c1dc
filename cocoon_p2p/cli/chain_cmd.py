"""`chain`: the embedded local TON chain as a service that a devnet's node processes share.

Real contracts run in pytvm's transaction emulator; accounts and the clock persist in ``--dir``.
Nodes reach it with ``--chain HOST:PORT``; it has a faucet (each node asks it to fund its wallet on
start) and no authentication, so it only listens on loopback.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

import trio

from ..errors import ConfigError, find_exception

log = logging.getLogger("cocoon_p2p.chain")
ADDR_FILE = "chain.addr"


def register_chain(sub: argparse._SubParsersAction) -> None:
    chain = sub.add_parser(
        "chain",
        help="run a local TON chain (emulated, with a faucet) for a devnet's nodes",
        description="Serve an emulated TON chain (the real payment-channel contract in pytvm's emulator) on a "
        "loopback address until Ctrl-C. Start nodes with --chain HOST:PORT to pay through payment channels on it. "
        f"State persists in --dir; the bound address is written to DIR/{ADDR_FILE}.",
    )
    chain.add_argument("--dir", type=Path, default=Path(".devnet/chain"), help="where the chain keeps its state")
    chain.add_argument("--listen", default="127.0.0.1:7399", help="loopback host:port (port 0: any free port)")
    chain.add_argument("--advance", type=int, metavar="SECONDS",
                       help="instead of serving: move a running chain's clock forward (ends quarantines)")  # fmt: skip
    chain.set_defaults(handler=cmd_chain)


def cmd_chain(args: argparse.Namespace) -> int:
    if args.advance is not None:
        return _advance(args)
    from ..identity.keystore import ensure_data_dir, write_private_file
    from ..net import TcpNetwork
    from ..payments.chain import run_emulator_service

    root = ensure_data_dir(args.dir)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(run_emulator_service, root, TcpNetwork(), args.listen)
            write_private_file(root / ADDR_FILE, address.encode())
            log.info("local TON chain on %s (state in %s); nodes join it with --chain %s", address, root, address)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        (root / ADDR_FILE).unlink(missing_ok=True)
        log.info("chain stopped")

    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as exc:
        bind_error = find_exception(exc, OSError)
        if not isinstance(bind_error, OSError):
            raise
        raise ConfigError(f"cannot listen on {args.listen}: {bind_error.strerror or bind_error}") from None
    return 0


def _advance(args: argparse.Namespace) -> int:
    from ..net import TcpNetwork
    from ..payments.chain import RemoteChain

    try:
        address = (args.dir / ADDR_FILE).read_text().strip()
    except OSError:
        address = args.listen

    async def main() -> int:
        chain = RemoteChain(TcpNetwork(), address)
        try:
            return await chain.advance_time(args.advance)
        finally:
            await chain.aclose()

    print(f"chain time is now {trio.run(main)}")
    return 0
