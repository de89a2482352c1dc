"""`status`, `peers`, `dht get|find`: talk to a running node's admin interface."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..errors import ConfigError
from ..identity import default_data_dir
from ..node.admin import read_admin_endpoint


def admin_request(data_dir: Path | None, command: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    address, token = read_admin_endpoint(data_dir or default_data_dir())
    try:
        response = httpx.get(
            f"http://{address}/v1/{command}",
            params=params or {},
            headers={"authorization": f"Bearer {token}"},
            timeout=60.0,
        )
    except httpx.HTTPError:
        raise ConfigError(f"the node's admin interface at {address} does not answer; is the node running?") from None
    body = response.json()
    if response.status_code != 200:
        raise ConfigError(body.get("error", f"admin call failed with HTTP {response.status_code}"))
    return body


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    status = sub.add_parser("status", help="show a running node's state")
    add_common(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    peers = sub.add_parser("peers", help="list the peers in a running node's routing table")
    add_common(peers)
    peers.add_argument("--json", action="store_true")
    peers.set_defaults(handler=cmd_peers)

    dht = sub.add_parser("dht", help="query the DHT through a running node")
    dht_sub = dht.add_subparsers(dest="dht_command", metavar="get|find", required=True)
    get = dht_sub.add_parser("get", help="fetch the records stored under a 64-hex-digit key")
    add_common(get)
    get.add_argument("key")
    get.set_defaults(handler=lambda a: _print(admin_request(a.data_dir, "dht/get", {"key": a.key}), True))
    find = dht_sub.add_parser("find", help="find the addresses of a peer id")
    add_common(find)
    find.add_argument("peer")
    find.set_defaults(handler=lambda a: _print(admin_request(a.data_dir, "dht/find", {"peer": a.peer}), True))


def _print(body: dict[str, Any], as_json: bool) -> int:
    print(json.dumps(body, indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    body = admin_request(args.data_dir, "status")
    if args.json:
        return _print(body, True)
    for key, value in body.items():
        print(f"{key:>16}: {value}")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    body = admin_request(args.data_dir, "peers")
    if args.json:
        return _print(body, True)
    for peer in body["peers"]:
        print(f"{peer['id']}  {peer['address']}")
    print(f"({len(body['peers'])} peers)")
    return 0
