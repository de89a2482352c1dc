"""`keygen` and `id`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..identity import Identity, default_data_dir, load_identity, save_identity


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    keygen = sub.add_parser(
        "keygen",
        help="create this node's ed25519 identity",
        description=(
            "Create the node's ed25519 identity in the data dir (mode 0600). The peer id is the "
            "SHA-256 of the public key, printed as 64 hex digits."
        ),
    )
    add_common(keygen)
    keygen.add_argument("--force", action="store_true", help="replace an existing key (the old peer id is lost)")
    keygen.set_defaults(handler=cmd_keygen)
    show = sub.add_parser("id", help="print this node's peer id", description="Print the node's peer id.")
    add_common(show)
    show.add_argument("--json", action="store_true", help="print id and public key as JSON")
    show.set_defaults(handler=cmd_id)


def cmd_keygen(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or default_data_dir()
    identity = Identity.generate()
    path = save_identity(identity, data_dir, overwrite=args.force)
    print(f"created {path}")
    print(f"peer id: {identity.peer_id}")
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    identity = load_identity(args.data_dir or default_data_dir())
    if args.json:
        import json

        print(json.dumps({"peer_id": str(identity.peer_id), "public_key": identity.public_key.hex()}))
    else:
        print(identity.peer_id)
    return 0
