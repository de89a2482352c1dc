"""`setup`: fetch what the project needs once (demo model, contract code)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    setup = sub.add_parser("setup", help="prepare the demo model and the payment-channel contract code")
    setup.add_argument("--skip-model", action="store_true")
    setup.add_argument("--skip-contract", action="store_true")
    setup.set_defaults(handler=cmd_setup)


def cmd_setup(args: argparse.Namespace) -> int:
    if not args.skip_contract:
        try:
            from ..payments.contract_code import ensure_contract_code
        except ImportError:
            print("payments module not installed yet; skipping the contract code")
        else:
            ensure_contract_code()
            print("payment-channel contract code: ready (hash checked)")
    if not args.skip_model:
        try:
            from ..inference.models import ensure_default_model
        except ImportError:
            print("inference module not installed yet; skipping the demo model")
        else:
            print(f"demo model: {ensure_default_model()}")
    return 0
