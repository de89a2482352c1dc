"""kill -9 at random points of paid streams: real node processes and the chain service, restarted.

A chain service, a bootstrap peer, one worker and one gateway run as `cocoon-p2p` processes. Each
round streams a completion through the gateway and, at a seeded random token, SIGKILLs the worker,
the gateway or the chain, then restarts it from its data dir. At the end the gateway closes its
channels cooperatively and the on-chain outcome is checked against the tokens the test received:

- the worker is paid for everything the client got, less at most the one chunk a killed client
  had not paid for yet (the credit bounds what a worker can lose; its books are checked too);
- the client never pays for a token it did not get;
- every close pays out on chain exactly the amounts both sides agreed, and the wallets show it.

Prompt tokens are free and a completion token costs K nanoTON, so value = K x tokens, and greedy
output of this prompt comes one token per streamed event (checked on every finished job).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.node.admin import ADDR_FILE
from cocoon_p2p.node.devnet import Devnet, DevnetPeer
from cocoon_p2p.payments.chain import CHANNEL_UNINITED, RemoteChain
from tests.cli.test_node_processes import free_ports

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("COCOON_KILL9_SEED", "20261122"))
K = 1_000_000  # nanoTON per completion token (price 1e12 per 1M tokens)
CREDIT = 16 * K  # the worker's credit: 16 completion tokens
PROMPT = "Count from one to twenty in words, separated by commas."
MAX_TOKENS = 40
VICTIMS = ["worker", "gateway", "chain"] * 2
MAX_GAS = 200_000_000  # fees a channel's open and close may cost the client


def _config(path: Path, text: str) -> None:
    (path / "config.toml").write_text(text)


def _cli(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "cocoon_p2p.cli.main", *args], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class Cluster:
    def __init__(self, root: Path) -> None:
        chain_port, boot, worker, gateway, http = free_ports(5)
        self.root = root
        self.chain_dir = root / "chain"
        self.chain_address = f"127.0.0.1:{chain_port}"
        self.chain: subprocess.Popen[bytes] | None = None
        self.net = Devnet(root)
        chain = ["--chain", self.chain_address]
        self.net.add_peer("boot", ["bootstrap"], port=boot)
        self.worker = self.net.add_peer("worker", ["worker"], ["--price-prompt", "0", "--price-completion",
                                                               str(K * 1_000_000), *chain], port=worker)  # fmt: skip
        self.gateway = self.net.add_peer("gateway", ["client"], ["--gateway-listen", f"127.0.0.1:{http}", *chain],
                                         port=gateway)  # fmt: skip
        self.url = f"http://127.0.0.1:{http}/v1"
        fast = "[payments]\nwatch_interval_s = 0.5\nclose_grace_s = 2.0\n"
        _config(self.worker.data_dir, fast + "payee_idle_close_s = 0\n")
        _config(self.gateway.data_dir, fast + "idle_close_s = 3600\nclose_on_shutdown = false\n"
                f"[client]\nmax_price_prompt = 0\nmax_price_completion = {K * 1_000_000}\n")  # fmt: skip

    def start_chain(self) -> None:
        log = (self.root / "chain.log").open("ab")
        self.chain = subprocess.Popen(
            [sys.executable, "-m", "cocoon_p2p.cli.main", "chain", "--dir", str(self.chain_dir),
             "--listen", self.chain_address], stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (self.chain_dir / "chain.addr").exists():
            assert self.chain.poll() is None and time.monotonic() < deadline, "the chain service did not start"
            time.sleep(0.05)

    def start_peer(self, peer: DevnetPeer) -> None:
        (peer.data_dir / ADDR_FILE).unlink(missing_ok=True)  # a killed node leaves its address behind
        cmd = [
            sys.executable, "-m", "cocoon_p2p.cli.main", "node", "--data-dir", str(peer.data_dir),
            "--listen", peer.listen, "--bootstrap", str(self.net.bootstrap_file), "--role", ",".join(peer.roles),
            *peer.extra_args,
        ]  # fmt: skip
        peer.process = subprocess.Popen(cmd, stdout=peer.log_path.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not (peer.data_dir / ADDR_FILE).exists():
            assert peer.process.poll() is None, peer.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{peer.name} did not come up"
            time.sleep(0.1)

    def start(self) -> None:
        self.start_chain()
        self.net.write_bootstrap()
        for peer in self.net.peers:
            self.start_peer(peer)

    def kill(self, victim: str) -> None:
        process = self.chain if victim == "chain" else self.peer(victim).process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self, victim: str) -> None:
        if victim == "chain":
            (self.chain_dir / "chain.addr").unlink(missing_ok=True)
            self.start_chain()
        else:
            self.start_peer(self.peer(victim))

    def alive(self, victim: str) -> bool:
        process = self.chain if victim == "chain" else self.peer(victim).process
        return process is not None and process.poll() is None

    def peer(self, name: str) -> DevnetPeer:
        return self.worker if name == "worker" else self.gateway

    def stop(self) -> None:
        self.net.stop()
        if self.chain is not None and self.chain.poll() is None:
            self.chain.send_signal(signal.SIGTERM)
            self.chain.wait(15)


class Ledger:
    """What the test saw: streamed tokens, finished jobs and kills."""

    def __init__(self) -> None:
        self.events = 0
        self.finished_cost = 0
        self.gateway_kills = 0


def stream_job(cluster: Cluster, ledger: Ledger, kill_at: int | None = None, victim: str = "") -> bool:
    """One streamed completion; SIGKILL ``victim`` once ``kill_at`` tokens arrived. True if it finished."""
    body = {"model": "gemma3-270m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    events, usage, cost = 0, None, None
    try:
        with httpx.stream("POST", f"{cluster.url}/chat/completions", json=body, timeout=120) as response:
            if response.status_code != 200:
                return False
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                data = json.loads(line[len("data: ") :])
                choices = data.get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    events += 1
                    ledger.events += 1
                    if events == kill_at:
                        cluster.kill(victim)
                        ledger.gateway_kills += victim == "gateway"
                if data.get("usage"):
                    usage, cost = data["usage"], data["cocoon"]["cost_nanoton"]
    except httpx.HTTPError:
        return False
    if usage is None:
        return False
    assert usage["completion_tokens"] == events, "one token per streamed event, or the accounting below is off"
    assert cost == K * events
    ledger.finished_cost += cost
    return True


def funded_wallet(peer: DevnetPeer) -> str:
    deadline = time.monotonic() + 60
    while True:
        status = _cli("status", "--json", "--data-dir", str(peer.data_dir))["payments"]
        if (status["wallet_balance_nanoton"] or 0) >= 1_000_000_000:
            return str(status["wallet"])
        assert time.monotonic() < deadline, f"{peer.name}'s wallet was never funded"
        time.sleep(0.2)


def until_finished(cluster: Cluster, ledger: Ledger) -> None:
    deadline = time.monotonic() + 180
    while not stream_job(cluster, ledger):
        assert time.monotonic() < deadline, "no job got through after the restart"
        time.sleep(1.0)


async def _chain_view(address: str, wallets: list[str], contracts: list[str]) -> tuple[list[int], list[int]]:
    chain = RemoteChain(TcpNetwork(), address)
    try:
        balances = [await chain.balance(w) for w in wallets]
        states = [await chain.get_channel_state(c) for c in contracts]
        return balances, states
    finally:
        await chain.aclose()


def test_kill9_during_paid_streams_loses_no_money(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    cluster = Cluster(tmp_path)
    ledger = Ledger()
    try:
        cluster.start()
        wallets = [funded_wallet(p) for p in (cluster.gateway, cluster.worker)]
        (gateway_before, worker_before), _ = trio.run(_chain_view, cluster.chain_address, wallets, [])
        until_finished(cluster, ledger)  # opens the channel

        victims = list(VICTIMS)
        rng.shuffle(victims)
        for victim in victims:
            kill_at = rng.randint(1, MAX_TOKENS - 2)
            stream_job(cluster, ledger, kill_at, victim)
            if cluster.alive(victim):  # the answer ended before the chosen token: kill it now
                cluster.kill(victim)
            cluster.restart(victim)
            until_finished(cluster, ledger)  # the network recovered; the channel is reused

        listed = _cli("channels", "--json", "--data-dir", str(cluster.gateway.data_dir))["channels"]
        reports = [_cli("channels", "close", c["id"], "--data-dir", str(cluster.gateway.data_dir))
                   for c in listed if c["status"] == "open"]  # fmt: skip
        worker_books = _cli("channels", "--json", "--data-dir", str(cluster.worker.data_dir))["channels"]
        (gateway_after, worker_after), states = trio.run(
            _chain_view, cluster.chain_address, wallets, [r["contract"] for r in reports]
        )
    finally:
        cluster.stop()

    assert all(state == CHANNEL_UNINITED for state in states)
    assert all(r["how"] == "cooperative" for r in reports)
    paid = sum(r["paid_to_worker_nanoton"] for r in reports)
    print(
        f"kill9: {ledger.events} tokens streamed ({ledger.finished_cost // K} in finished jobs), "
        f"{ledger.gateway_kills} gateway kills, {len(reports)} channels closed, {paid // K} tokens paid"
    )
    signed = sum(c["moved_nanoton"] for c in listed)
    accepted = sum(c["moved_nanoton"] for c in worker_books)
    assert paid == signed  # a cooperative close pays what the client last signed...
    assert accepted <= paid  # ...which covers every state the worker accepted
    for book in worker_books:  # the worker never let more than the credit go unpaid
        assert book["delivered_nanoton"] - book["moved_nanoton"] <= CREDIT
    # The client pays for what it got, never more; a killed client may owe the token it got last.
    assert K * (ledger.events - ledger.gateway_kills) <= paid <= K * ledger.events
    assert paid >= ledger.finished_cost
    # On chain: the worker's wallet received exactly the payouts; the client paid the jobs and gas.
    assert worker_after - worker_before == sum(r["payout_b"] - r["fees_b"] for r in reports)
    assert all(0 < r["paid_to_worker_nanoton"] - r["payout_b"] < 10_000_000 for r in reports)
    assert 0 < gateway_before - gateway_after - paid < MAX_GAS * len(reports)
