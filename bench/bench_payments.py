"""Payment updates per second: sign + verify + persist on both ends of a channel.

One update is what a chunk of tokens costs the protocol: the payer persists and signs a new
cumulative state (``PayerChannel.pay``), it crosses the wire msgpacked, and the payee verifies and
persists it (``PayeeChannel.accept``). Baselines measured in the same run, on the same disk:

- raw ed25519 sign + verify of a 32-byte hash (the floor of the crypto alone);
- one fsync'd sqlite commit (WAL, synchronous=FULL): the floor of one durable write.

An update needs two durable writes, so one channel alone is bound by the disk; a node serving many
channels at once shares each fsync among them (group commit), which is the figure the target is
about. Run with ``python -m bench.bench_payments``.
"""

from __future__ import annotations

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
    return {
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


if __name__ == "__main__":
    main()
