"""netcheck: does the simulated network deliver the delays it was configured with?

Every peer listens with an echo handler, dials a few random others through the
``Network`` seam only, and times a dial plus a few echo round trips in virtual
time. Without a bandwidth cap and with a window larger than the message, the
measured RTT must equal twice the pair's one-way delay exactly (delays sit on a
binary grid, so the float sums are exact), and a dial must take one RTT.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import trio

from ..harness import Knob, Progress, Seeds, World, percentile, simulate
from ..latency import quantize
from ..results import Tables, plot_cdf, plot_scatter

NAME = "netcheck"
QUESTION = "Does measured RTT equal 2 x the configured one-way latency, per pair, in virtual time?"
KNOBS: dict[str, Knob] = {
    "pairs": Knob(3, "peers each peer dials"),
    "rounds": Knob(3, "echo round trips per connection"),
    "size": Knob(64, "bytes per echo message"),
    "start_spread_s": Knob(1.0, "peers start at a uniform random time in [0, this)"),
}
PORT = 7400


async def _echo(stream: trio.abc.Stream, remote: str) -> None:
    try:
        while data := await stream.receive_some():
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def _receive_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    parts, have = [], 0
    while have < size:
        data = await stream.receive_some(size - have)
        if not data:
            raise trio.BrokenResourceError("peer closed mid-echo")
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def _serialisation(world: World, src: str, dst: str, size: int) -> float:
    # Only exact while both uplinks are idle; with a cap, contention shows up as error_s.
    total = 0.0
    for host in (src, dst):
        rate = world.network.endpoints[host].uplink.bytes_per_second
        if rate:
            total += quantize(size / rate)
    return total


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    nodes, pairs, rounds, size = params["nodes"], params["pairs"], params["rounds"], params["size"]
    if nodes < 2:
        raise ValueError("netcheck needs at least 2 nodes")
    pairs = min(pairs, nodes - 1)
    world = World.from_params(params, seeds)
    ips = [world.ip(i) for i in range(nodes)]
    endpoints = [world.network.endpoint(ip) for ip in ips]
    per_peer: list[list[dict[str, Any]]] = [[] for _ in range(nodes)]

    async def probe(index: int) -> None:
        rng = seeds.rng(f"netcheck/peer/{index}")
        await trio.sleep(quantize(rng.uniform(0.0, params["start_spread_s"])))
        targets = rng.sample([j for j in range(nodes) if j != index], pairs)
        src = ips[index]
        for target in targets:
            dst = ips[target]
            one_way = world.network.one_way(src, dst)
            base = {"src": src, "dst": dst, "one_way_s": one_way}
            started = trio.current_time()
            try:
                stream = await endpoints[index].dial(f"{dst}:{PORT}")
            except OSError:
                per_peer[index].append(
                    {
                        **base,
                        "round": 0,
                        "ok": 0,
                        "dial_s": trio.current_time() - started,
                        "rtt_s": math.nan,
                        "expected_rtt_s": math.nan,
                        "error_s": math.nan,
                    }
                )
                continue
            dial_s = trio.current_time() - started
            expected = 2 * one_way + _serialisation(world, src, dst, size)
            payload = rng.randbytes(size)
            async with stream:
                for round_no in range(1, rounds + 1):
                    sent_at = trio.current_time()
                    await stream.send_all(payload)
                    echoed = await _receive_exactly(stream, size)
                    rtt = trio.current_time() - sent_at
                    if echoed != payload:
                        raise AssertionError(f"echo from {dst} corrupted the payload")
                    per_peer[index].append(
                        {
                            **base,
                            "round": round_no,
                            "ok": 1,
                            "dial_s": dial_s,
                            "rtt_s": rtt,
                            "expected_rtt_s": expected,
                            "error_s": rtt - expected,
                        }
                    )

    async def main() -> None:
        async with trio.open_nursery() as servers:
            for endpoint in endpoints:
                await servers.start(endpoint.serve, f"0.0.0.0:{PORT}", _echo)
            async with trio.open_nursery() as probes:
                for index in range(nodes):
                    probes.start_soon(probe, index)
            servers.cancel_scope.cancel()

    simulate(main, seeds=seeds, progress=progress)
    rows = [row for peer_rows in per_peer for row in peer_rows]
    peers = [{"host": ip, **vars(world.network.stats(ip))} for ip in ips]
    return {"rows": rows, "peers": peers}


def summarize(tables: Tables) -> dict[str, Any]:
    rows = tables["rows"]
    ok = [r for r in rows if r["ok"]]
    rtts = [r["rtt_s"] for r in ok]
    errors = [abs(r["error_s"]) for r in ok]
    dial_errors = [abs(r["dial_s"] - 2 * r["one_way_s"]) for r in ok]
    return {
        "echoes": len(ok),
        "failed_dials": sum(1 for r in rows if not r["ok"]),
        "exact_fraction": (sum(1 for e in errors if e == 0.0) / len(errors)) if errors else math.nan,
        "max_abs_error_s": max(errors) if errors else math.nan,
        "max_dial_error_s": max(dial_errors) if dial_errors else math.nan,
        "rtt_p50_s": percentile(rtts, 50),
        "rtt_p90_s": percentile(rtts, 90),
        "rtt_p99_s": percentile(rtts, 99),
        "bytes_sent": sum(p["bytes_sent"] for p in tables["peers"]),
    }


def plot(tables: Tables, out_dir: Path) -> list[Path]:
    ok = [r for r in tables["rows"] if r["ok"]]
    measured = [r["rtt_s"] * 1000 for r in ok]
    configured = [r["expected_rtt_s"] * 1000 for r in ok]
    return [
        plot_cdf(
            out_dir / "rtt_cdf.png",
            {"measured RTT": measured, "configured 2 x one-way": configured},
            xlabel="RTT (ms, virtual)",
            title="netcheck: echo round-trip time",
        ),
        plot_scatter(
            out_dir / "rtt_vs_configured.png",
            configured,
            measured,
            xlabel="expected RTT (ms)",
            ylabel="measured RTT (ms)",
            title="netcheck: measured vs configured",
            diagonal=True,
        ),
    ]
