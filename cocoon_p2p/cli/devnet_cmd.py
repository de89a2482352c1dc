"""`devnet`: N peers on loopback, stopped cleanly with Ctrl-C."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from ..node.devnet import Devnet, stop_detached


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    devnet = sub.add_parser(
        "devnet",
        help="run N peers on loopback until Ctrl-C",
        description="Start N `cocoon-p2p node` processes on 127.0.0.1 that bootstrap from the first one. "
        "Each peer keeps its data dir and node.log under --dir. Ctrl-C stops them all.",
    )
    devnet.add_argument(
        "action",
        nargs="?",
        choices=["start", "stop"],
        default="start",
        help="start (default, foreground) or stop a detached devnet (as `cocoon-p2p demo` leaves)",
    )
    devnet.add_argument("--peers", type=int, default=5, help="number of peers (default 5)")
    devnet.add_argument("--dir", type=Path, default=Path(".devnet"), help="where the peers keep their data")
    devnet.add_argument("--base-port", type=int, default=7400, help="peer i listens on base-port + i")
    devnet.set_defaults(handler=cmd_devnet)


def cmd_devnet(args: argparse.Namespace) -> int:
    if args.action == "stop":
        stopped = stop_detached(args.dir)
        print(f"stopped {len(stopped)} peers: {', '.join(stopped)}" if stopped else f"no devnet running in {args.dir}")
        return 0
    net = Devnet(args.dir, base_port=args.base_port)
    for i in range(args.peers):
        net.add_peer(f"peer-{i}", ["bootstrap"])
    net.start()
    try:
        net.wait_ready(timeout=60)
        print(f"devnet up: {args.peers} peers, bootstrap list {net.bootstrap_file}")
        print(f"try: cocoon-p2p peers --data-dir {net.peers[-1].data_dir}")
        print("Ctrl-C stops the devnet.")
        while all(p.process is not None and p.process.poll() is None for p in net.peers):
            time.sleep(0.5)
        print("a peer exited; stopping the devnet")
    except KeyboardInterrupt:
        print("stopping the devnet…")
    finally:
        net.stop()
    return 0
