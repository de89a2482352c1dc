"""Time from RFQ to award on loopback, against the bid window plus one measured round trip.

One client and a few workers (real hosts, real Noise, real gossip) run auctions
back to back, twice: with the default early close (the window ends once every
worker holding a live offer has bid) and with it turned off, where an auction
cannot finish before its bid window closes. The award is one more round trip;
what remains is our overhead (signing, validation, scheduling). The round trip is
measured in the same run, client to winner, over the same connection. Run with ``python -m bench.bench_auction``.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import trio

from cocoon_p2p.dht import Dht
from cocoon_p2p.gossip import Gossip, GossipConfig
from cocoon_p2p.gossip.discovery import find_subscribers
from cocoon_p2p.identity import Identity
from cocoon_p2p.market import (
    ClientMarket,
    GossipRfqTransport,
    ModelInfo,
    Prices,
    WorkerMarket,
    install_offer_validator,
    rfq_topic,
)
from cocoon_p2p.net import SystemClock, TcpNetwork
from cocoon_p2p.rpc import Host

MODEL = "gemma3-270m"
SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MAX = Prices(100_000_000, 300_000_000)
FAST = GossipConfig(heartbeat_interval=0.1, discovery_interval=2.0)


async def _peer(nursery: trio.Nursery, seed: int) -> tuple[Host, Dht, Gossip]:
    clock = SystemClock()
    host = Host(Identity.generate(), TcpNetwork())
    await nursery.start(host.run)
    dht = Dht(host, clock, rng=random.Random(seed))
    await nursery.start(dht.run)
    install_offer_validator(dht)
    gossip = Gossip(host, dht, clock, random.Random(1000 + seed), FAST)
    await nursery.start(gossip.run)
    return host, dht, gossip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bench(workers: int, auctions: int, windows: tuple[float, ...]) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        peers = [await _peer(nursery, i) for i in range(1 + workers + 2)]
        for _, dht, _ in peers[1:]:
            await dht.bootstrap([(peers[0][0].peer_id, peers[0][0].listen_address)])
        markets = []
        for i, (host, dht, gossip) in enumerate(peers[1 : 1 + workers]):
            market = WorkerMarket(
                host,
                dht,
                dht.clock,
                GossipRfqTransport(gossip),
                models=[ModelInfo(MODEL, SHA, 4096, 40.0)],
                prices=Prices(20_000_000 + i, 60_000_000 + i),
                max_jobs=1000,
                load=lambda: 0,
            )
            await nursery.start(market.run)
            markets.append(market)
        c_host, c_dht, c_gossip = peers[0]
        by_id = {m.peer_id: m for m in markets}
        client = ClientMarket(c_host, c_dht, c_dht.clock, GossipRfqTransport(c_gossip), rng=random.Random(1))

        # Readiness: every worker's subscription is findable in the DHT, and meshes have had time to form.
        topic = rfq_topic(MODEL)
        while not set(by_id) <= {s.peer_id for s in await find_subscribers(c_dht, topic)}:
            await trio.sleep(0.2)
        await trio.sleep(1.0)

        results: dict[str, Any] = {"workers": workers, "auctions_per_window": auctions}
        for name in ("early-close", "full-window"):
            client.config.close_when_all_bid = name == "early-close"
            for window in windows:
                times, rtts = [], []
                for _ in range(auctions):
                    start = trio.current_time()
                    outcome = await client.run_auction(MODEL, 1000, 200, max_prices=MAX, bid_window=window)
                    times.append(trio.current_time() - start)
                    winner = by_id[outcome.winner.worker_id]
                    winner.take_award(outcome.rfq.job_id, c_host.peer_id)
                    conn = c_host.connection_for(winner.peer_id)
                    assert conn is not None
                    t0 = trio.current_time()
                    await conn.call("dht.ping", {})
                    rtts.append(trio.current_time() - t0)
                rtt = statistics.median(rtts)
                key = f"gossip/{name}/{int(window * 1000)}ms"
                results[key] = {
                    "window_s": window,
                    "rtt_median_s": rtt,
                    "auction_median_s": statistics.median(times),
                    "auction_p90_s": _pct(times, 0.9),
                    "window_plus_rtt_s": window + rtt,
                    "overhead_median_s": statistics.median(times) - window - rtt,
                }
        nursery.cancel_scope.cancel()
    return results


def run(workers: int = 5, auctions: int = 15, windows: tuple[float, ...] = (0.1, 0.25)) -> dict[str, Any]:
    """Run the benchmark once; returns the figures ``main`` prints."""
    return trio.run(_bench, workers, auctions, windows)


def main() -> None:
    r = run()
    print(f"RFQ -> award on loopback: 1 client, {r['workers']} workers, {r['auctions_per_window']} auctions each")
    print(f"{'transport/mode/window':<28} {'RTT':>9} {'window+RTT':>11} {'auction p50':>12} {'p90':>9} {'overhead':>9}")
    for key, v in r.items():
        if not isinstance(v, dict):
            continue
        print(
            f"{key:<28} {v['rtt_median_s'] * 1000:>7.2f}ms {v['window_plus_rtt_s'] * 1000:>9.1f}ms "
            f"{v['auction_median_s'] * 1000:>10.1f}ms {v['auction_p90_s'] * 1000:>7.1f}ms "
            f"{v['overhead_median_s'] * 1000:>7.2f}ms  {'✓' if v['overhead_median_s'] <= 0 else '✗'}"
        )
    print("target: auction p50 <= window + RTT (overhead <= 0). early-close ends the window once every worker")
    print("with a live offer in the DHT has bid; full-window always waits it out (a silent expected bidder).")


if __name__ == "__main__":
    main()
