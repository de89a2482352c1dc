"""`chain` (a local TON chain for a devnet) and `channels` (a node's payment channels)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .admin_cmds import admin_request
from .chain_cmd import register_chain


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    register_chain(sub)
    channels = sub.add_parser(
        "channels",
        help="list, close or force-close a running node's TON payment channels",
        description="Without an action: list the node's channels, its wallet and balances. "
        "`close ID` closes a channel cooperatively with the other party (it must be reachable); "
        "`force-close ID` starts an uncooperative close on chain with the latest signed state: "
        "the contract pays out after the quarantine. ID may be any unique prefix of 4+ hex digits.",
    )
    add_common(channels)
    channels.add_argument("action", nargs="?", choices=["list", "close", "force-close"], default="list")
    channels.add_argument("id", nargs="?", help="channel id (hex, or a unique prefix)")
    channels.add_argument("--json", action="store_true")
    channels.set_defaults(handler=cmd_channels)


def _nanoton(value: Any) -> str:
    return "?" if value is None else f"{value / 1e9:.9f} TON"


def cmd_channels(args: argparse.Namespace) -> int:
    if args.action != "list":
        if not args.id:
            raise ConfigError(f"`channels {args.action}` needs the channel id (see `cocoon-p2p channels`)")
        command = "channels/close" if args.action == "close" else "channels/force_close"
        body = admin_request(args.data_dir, command, {"id": args.id})
        print(json.dumps(body, indent=2))
        return 0
    body = admin_request(args.data_dir, "channels")
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"wallet   {body['wallet']}  {_nanoton(body['wallet_balance_nanoton'])}  (chain {body['chain']})")
    print(f"locked   {body['locked_nanoton']} nanoTON in open channels, {body['paid_nanoton']} paid through them; "
          f"{body['earned_unclaimed_nanoton']} earned, not yet closed")  # fmt: skip
    rows = body["channels"]
    if not rows:
        print("no channels")
        return 0
    print(f"{'id':32}  {'role':16}  {'status':7}  {'deposit':>12}  {'moved':>12}  peer")
    for c in rows:
        print(f"{c['id']}  {c['role']:16}  {c['status']:7}  {c['deposit_nanoton']:>12}  {c['moved_nanoton']:>12}  "
              f"{c['peer'][:16]}{'  (busy)' if c['busy'] else ''}")  # fmt: skip
    return 0
