"""Payment updates per second: sign + verify + persist on both ends of a channel.

One update is what a chunk of tokens costs the protocol: the payer persists and signs a new
cumulative state (``PayerChannel.pay``), it crosses the wire msgpacked, and the payee verifies and
persists it (``PayeeChannel.accept``). Baselines measured in the same run, on the same disk:

- raw ed25519 sign + verify of a 32-byte hash (the floor of the crypto alone);
- one fsync'd sqlite commit (WAL, synchronous=FULL): the floor of one durable write.

An update needs two durable writes, so one channel alone is bound by the disk; a node serving many
channels at once shares each fsync among them (group commit), which is the figure the target is
about. Run with ``python -m bench.bench_payments``.

Second target: payments take under 2 % of a worker's CPU while it streams tokens. A real devnet
(chain service, bootstrap, worker, gateway: separate ``cocoon-p2p`` processes) streams one long
greedy completion through a payment channel; the worker counts the CPU time of its payment
handling (parsing, checking and persisting each state: event-loop time of those steps plus the
store's commit thread, ``cocoon_payments_cpu_seconds_total`` in its /metrics), which is compared
with the worker process's whole CPU time for the job (utime + stime from /proc).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import nacl.signing
import trio

from cocoon_p2p.identity import Identity
from cocoon_p2p.payments.channel import PayeeChannel, PayerChannel
from cocoon_p2p.payments.params import ChannelParams, SignedState, random_channel_id
from cocoon_p2p.payments.store import ChannelStore
from cocoon_p2p.wire.codec import pack, unpack

TARGET_PER_S = 2000
STEP = 1_000  # nanoTON per update
WALLET_A, WALLET_B = "0:" + "aa" * 32, "0:" + "bb" * 32


def _sign_verify_per_s(count: int) -> float:
    key = nacl.signing.SigningKey.generate()
    verify = key.verify_key
    digest = os.urandom(32)
    start = time.perf_counter()
    for _ in range(count):
        verify.verify(digest, key.sign(digest).signature)
    return count / (time.perf_counter() - start)


def _fsync_writes_per_s(where: Path, count: int) -> float:
    db = sqlite3.connect(where / "baseline.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    blob = os.urandom(400)  # about the size of a channel record
    start = time.perf_counter()
    for i in range(count):
        db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (i % 16, blob))
    rate = count / (time.perf_counter() - start)
    db.close()
    return rate


async def _pair(store_a: ChannelStore, store_b: ChannelStore) -> tuple[PayerChannel, PayeeChannel]:
    key_a, key_b = Identity.generate(), Identity.generate()
    params = ChannelParams(random_channel_id(), key_a.public_key, key_b.public_key, WALLET_A, WALLET_B, 10**15)
    payer = await PayerChannel.create(params, key_a, store_a)
    payee = await PayeeChannel.create(params, key_b, store_b)
    await payer.set_payee_state(payee.own_state())
    return payer, payee


async def _updates(payer: PayerChannel, payee: PayeeChannel, count: int) -> None:
    for _ in range(count):
        total = payer.sent + STEP
        state = await payer.pay(total)
        await payee.accept(SignedState.from_wire(unpack(pack(state.to_wire()))), total, STEP)


async def _updates_per_s(store_a: ChannelStore, store_b: ChannelStore, channels: int, each: int) -> float:
    pairs = [await _pair(store_a, store_b) for _ in range(channels)]
    await _updates(*pairs[0], 3)  # warm up outside the timing
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for payer, payee in pairs:
            nursery.start_soon(_updates, payer, payee, each)
    return channels * each / (time.perf_counter() - start)


SHARE_TARGET = 0.02
STREAM_TOKENS = 200


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(data_dir: Path, name: str) -> float:
    import httpx

    address = (data_dir / "admin.addr").read_text().strip()
    for line in httpx.get(f"http://{address}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"{name} missing from the worker's metrics")


def _stream(url: str, max_tokens: int) -> int:
    import httpx

    body = {"model": "gemma3-270m", "prompt": "The history of the printing press begins", "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    tokens = 0
    with httpx.stream("POST", f"{url}/completions", json=body, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"usage"' in line and '"completion_tokens"' in line:
                usage = json.loads(line[6:]).get("usage")
                tokens = usage["completion_tokens"] if usage else tokens
    return tokens


def streaming_cpu_share(max_tokens: int = STREAM_TOKENS, persist_slack: float = 0.5) -> dict:
    """Payment CPU / worker CPU over one streamed job on a real multi-process devnet.

    ``persist_slack`` 0 makes the worker check and persist every payment before the next chunk;
    the default 0.5 lets a newer payment supersede one while half the credit is still on record."""
    import signal
    import socket
    import subprocess
    import sys

    from cocoon_p2p.node.devnet import Devnet

    ports = []
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="cocoon-bench-share-") as tmp:
        root = Path(tmp)
        chain_address = f"127.0.0.1:{ports[0]}"
        chain_log = (root / "chain.log").open("ab")
        chain = subprocess.Popen([sys.executable, "-m", "cocoon_p2p.cli.main", "chain", "--dir", str(root / "chain"),
                                  "--listen", chain_address], stdout=chain_log, stderr=subprocess.STDOUT)  # fmt: skip
        net = Devnet(root)
        try:
            while not (root / "chain" / "chain.addr").exists():
                time.sleep(0.05)
            flag = ["--chain", chain_address]
            net.add_peer("boot", ["bootstrap"], port=ports[1])
            worker = net.add_peer("worker", ["worker"], flag, port=ports[2])
            net.add_peer("gateway", ["client"], ["--gateway-listen", f"127.0.0.1:{ports[4]}", *flag], port=ports[3])
            (worker.data_dir / "config.toml").write_text(
                f"[payments]\nmeasure_cpu = true\npersist_slack = {persist_slack}\n"
            )
            net.start()
            net.wait_ready(timeout=600)
            url = f"http://127.0.0.1:{ports[4]}/v1"
            deadline = time.monotonic() + 120
            while True:  # warm up: offers visible, channel opened, caches warm
                try:
                    _stream(url, 16)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1.0)
            assert worker.process is not None
            pid = worker.process.pid
            cpu0, pay0 = _proc_cpu_s(pid), _metric(worker.data_dir, "cocoon_payments_cpu_seconds_total")
            store0 = _metric(worker.data_dir, "cocoon_payments_store_cpu_seconds_total")
            started = time.perf_counter()
            tokens = _stream(url, max_tokens)
            elapsed = time.perf_counter() - started
            time.sleep(0.5)  # the final payment is persisted after the client has its answer
            cpu1, pay1 = _proc_cpu_s(pid), _metric(worker.data_dir, "cocoon_payments_cpu_seconds_total")
            store1 = _metric(worker.data_dir, "cocoon_payments_store_cpu_seconds_total")
        finally:
            net.stop()
            chain.send_signal(signal.SIGTERM)
            chain.wait(15)
    payment_s, worker_s = pay1 - pay0, cpu1 - cpu0
    return {
        "stream_tokens": tokens,
        "stream_s": elapsed,
        "worker_cpu_s": worker_s,
        "payment_cpu_s": payment_s,
        "payment_store_commit_cpu_s": store1 - store0,
        "payment_cpu_per_token_us": payment_s / max(tokens, 1) * 1e6,
        "payment_share_of_worker_cpu": payment_s / worker_s if worker_s > 0 else float("nan"),
    }


def run(channels: int = 128, each: int = 25) -> dict:
    """Measure everything once; returns the figures ``main`` prints."""
    with tempfile.TemporaryDirectory(prefix="cocoon-bench-pay-") as tmp:
        where = Path(tmp)
        sign_verify = _sign_verify_per_s(4000)
        fsync_write = _fsync_writes_per_s(where, 300)
        cpu = trio.run(_updates_per_s, ChannelStore(":memory:"), ChannelStore(":memory:"), 1, 2000)
        stores = [ChannelStore(where / name) for name in ("seq-a.db", "seq-b.db", "con-a.db", "con-b.db")]
        sequential = trio.run(_updates_per_s, stores[0], stores[1], 1, 150)
        concurrent = trio.run(_updates_per_s, stores[2], stores[3], channels, each)
        for store in stores:
            store.close()
    streaming = streaming_cpu_share()
    strict = streaming_cpu_share(persist_slack=0.0)
    return {
        **streaming,
        "share_vs_target": streaming["payment_share_of_worker_cpu"] / SHARE_TARGET,
        "strict_payment_cpu_per_token_us": strict["payment_cpu_per_token_us"],
        "strict_payment_share_of_worker_cpu": strict["payment_share_of_worker_cpu"],
        "baseline_sign_verify_per_s": sign_verify,
        "baseline_fsync_write_per_s": fsync_write,
        "updates_per_s_cpu_only": cpu,
        "updates_per_s_durable_one_channel": sequential,
        "updates_per_s_durable_concurrent": concurrent,
        "concurrent_channels": channels,
        "cpu_vs_sign_verify": cpu / sign_verify,
        "one_channel_vs_fsync_write": sequential / fsync_write,
        "concurrent_vs_target": concurrent / TARGET_PER_S,
    }


def main() -> None:
    r = run()
    print("Payment updates (payer persists + signs, msgpack over the wire, payee verifies + persists)")
    print(f"  baseline: ed25519 sign+verify         {r['baseline_sign_verify_per_s']:9.0f}/s")
    print(f"  baseline: fsync'd sqlite commit       {r['baseline_fsync_write_per_s']:9.0f}/s")
    print(
        f"  updates, stores in memory (CPU only)  {r['updates_per_s_cpu_only']:9.0f}/s"
        f"  = {r['cpu_vs_sign_verify']:.2f}x sign+verify"
    )
    print(
        f"  updates, durable, one channel         {r['updates_per_s_durable_one_channel']:9.0f}/s"
        f"  = {r['one_channel_vs_fsync_write']:.2f}x one fsync'd write (two writes per update)"
    )
    print(
        f"  updates, durable, {r['concurrent_channels']} channels          "
        f"{r['updates_per_s_durable_concurrent']:9.0f}/s  = {r['concurrent_vs_target']:.2f}x the "
        f"{TARGET_PER_S}/s target (group commit)"
    )
    print(
        f"Worker streaming {r['stream_tokens']} tokens through a payment channel ({r['stream_s']:.1f} s, devnet,"
        " persist slack 0.5)"
    )
    print(f"  worker process CPU                    {r['worker_cpu_s'] * 1000:9.0f} ms")
    print(
        f"  payment accept + persist CPU          {r['payment_cpu_s'] * 1000:9.1f} ms"
        f"  = {r['payment_cpu_per_token_us']:.0f} us per token"
    )
    print(
        f"  share of the worker's CPU             {r['payment_share_of_worker_cpu'] * 100:9.2f} %"
        f"  = {r['share_vs_target']:.2f}x the {SHARE_TARGET * 100:.0f} % ceiling"
    )
    print(
        f"  every payment persisted (slack 0)     {r['strict_payment_share_of_worker_cpu'] * 100:9.2f} %"
        f"  ({r['strict_payment_cpu_per_token_us']:.0f} us per token)"
    )


if __name__ == "__main__":
    main()
