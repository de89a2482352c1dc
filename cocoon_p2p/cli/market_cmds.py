"""`offers MODEL`: the live offers for a model, as a running node sees them in the DHT."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from .admin_cmds import admin_request

NANO = 1_000_000_000


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    offers = sub.add_parser(
        "offers",
        help="list workers offering a model (prices, hardware, speed, reputation)",
        description="Ask the running node for the signed, unexpired offers for MODEL in the DHT. "
        "Prices are per 1M tokens; reputation is this node's own view of the worker.",
    )
    add_common(offers)
    offers.add_argument("model", metavar="MODEL", help="model id, e.g. gemma3-270m")
    offers.add_argument("--json", action="store_true", help="print the raw JSON answer")
    offers.set_defaults(handler=cmd_offers)


def ton(nano: int) -> str:
    """nanoTON as a TON amount without float rounding: 20000000 -> '0.02'."""
    whole, frac = divmod(nano, NANO)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(whole)


def hardware(offer: dict[str, Any]) -> str:
    gpus = offer.get("gpus") or []
    if gpus:
        return ", ".join(f"{g['count']}x {g['name']} ({g['vram_mb'] // 1024} GiB)" for g in gpus)
    cpu = offer.get("cpu") or {}
    return f"CPU {cpu.get('model', '?')} ({cpu.get('cores', '?')} cores)" if cpu else "?"


def format_offers(body: dict[str, Any]) -> str:
    offers = body.get("offers") or []
    if not offers:
        return f"no offers for {body.get('model')!r} in the DHT (is a worker serving it, and is this node joined?)"
    lines = [
        f"{'worker':<14} {'prompt TON/1M':>14} {'compl. TON/1M':>14} {'tok/s':>7} {'jobs':>4} {'rep':>5}  hardware"
    ]
    for o in offers:
        rep = o.get("reputation")
        rep_text = f"{rep['weight']:.2f}" if rep else "-"
        tps = o.get("tokens_per_s")
        lines.append(
            f"{o['worker'][:12] + '…':<14} {ton(o['price_prompt']):>14} {ton(o['price_completion']):>14} "
            f"{(f'{tps:.1f}' if tps is not None else '?'):>7} {o['max_jobs']:>4} {rep_text:>5}  {hardware(o)}"
            + ("  [attested]" if o.get("attested") else "")
        )
    lines.append(f"({len(offers)} offer{'s' if len(offers) != 1 else ''} for {body.get('model')})")
    return "\n".join(lines)


def cmd_offers(args: argparse.Namespace) -> int:
    body = admin_request(args.data_dir, "offers", {"model": args.model})
    print(json.dumps(body, indent=2) if args.json else format_offers(body))
    return 0
