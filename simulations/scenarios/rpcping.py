"""rpcping: the production RPC stack (Noise XX + framing + msgpack RPC) on SimNetwork.

Each of N peers runs an unmodified ``cocoon_p2p.rpc.Host`` on its simulated
endpoint, with a key derived from the seed, and calls a ``sim.ping`` method on a
few random others. In virtual time CPU work is free, so with no bandwidth cap the
timings are pure protocol round trips:

- connect = TCP dial (1 RTT) + Noise XX until the initiator can send (1 RTT) = 2 RTT;
- every call, the first included, = 1 RTT (the first request rides right behind
  the third handshake message);
- a connection the target already opened to us is reused (``pooled``): 0 s.

Deviations from that show extra round trips or queueing in the stack.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import trio

from ..harness import Knob, Progress, Seeds, World, percentile, simulate
from ..latency import quantize
from ..results import Tables, plot_cdf

NAME = "rpcping"
QUESTION = "Does the real RPC stack run unmodified on the simulated network, and what do connect and call cost in RTTs?"
KNOBS: dict[str, Knob] = {
    "pairs": Knob(3, "peers each peer connects to"),
    "calls": Knob(3, "sequential calls per connection"),
    "payload": Knob(32, "bytes of opaque payload per request (echoed back)"),
    "start_spread_s": Knob(1.0, "peers start at a uniform random time in [0, this)"),
}
PORT = 7400


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    # Imported here so the registry (and `list`) works while the RPC layer is unfinished.
    from cocoon_p2p.errors import ConnectionClosed, RemoteError
    from cocoon_p2p.rpc import CallContext, Host

    nodes, pairs, calls = params["nodes"], params["pairs"], params["calls"]
    if nodes < 2:
        raise ValueError("rpcping needs at least 2 nodes")
    pairs = min(pairs, nodes - 1)
    world = World.from_params(params, seeds)
    ips = [world.ip(i) for i in range(nodes)]
    hosts = [Host(world.identity(i), world.network.endpoint(ip), listen=f"{ip}:{PORT}") for i, ip in enumerate(ips)]
    per_peer: list[list[dict[str, Any]]] = [[] for _ in range(nodes)]

    async def ping(ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        return {"n": request.get("n"), "echo": request.get("data", b"")}

    for host in hosts:
        host.router.unary("sim.ping", ping)

    async def probe(index: int) -> None:
        rng = seeds.rng(f"rpcping/peer/{index}")
        await trio.sleep(quantize(rng.uniform(0.0, params["start_spread_s"])))
        targets = rng.sample([j for j in range(nodes) if j != index], pairs)
        payload = rng.randbytes(params["payload"])
        for target in targets:
            one_way = world.network.one_way(ips[index], ips[target])
            base = {"src": ips[index], "dst": ips[target], "one_way_s": one_way}
            # The target may have dialled us first: Host pools connections by peer id.
            base["pooled"] = int(hosts[index].connection_for(hosts[target].peer_id) is not None)
            started = trio.current_time()
            try:
                conn = await hosts[index].connect(f"{ips[target]}:{PORT}", expected=hosts[target].peer_id)
            except ConnectionClosed:
                per_peer[index].append(
                    {**base, "call": 0, "ok": 0, "connect_s": trio.current_time() - started, "call_s": math.nan}
                )
                continue
            connect_s = trio.current_time() - started
            for n in range(1, calls + 1):
                sent_at = trio.current_time()
                try:
                    reply = await conn.call("sim.ping", {"n": n, "data": payload})
                    ok = int(reply.get("n") == n and reply.get("echo") == payload)
                except (ConnectionClosed, RemoteError):
                    ok = 0
                per_peer[index].append(
                    {**base, "call": n, "ok": ok, "connect_s": connect_s, "call_s": trio.current_time() - sent_at}
                )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for host in hosts:
                await nursery.start(host.run)
            async with trio.open_nursery() as probes:
                for index in range(nodes):
                    probes.start_soon(probe, index)
            nursery.cancel_scope.cancel()

    simulate(main, seeds=seeds, progress=progress)
    rows = [row for peer_rows in per_peer for row in peer_rows]
    peers = [
        {"host": ip, "handshake_failures": host.handshake_failures, **vars(world.network.stats(ip))}
        for ip, host in zip(ips, hosts, strict=True)
    ]
    return {"rows": rows, "peers": peers}


def summarize(tables: Tables) -> dict[str, Any]:
    rows = tables["rows"]
    ok = [r for r in rows if r["ok"]]
    connect_rtts = [
        r["connect_s"] / (2 * r["one_way_s"]) for r in ok if r["call"] == 1 and not r["pooled"] and r["one_way_s"] > 0
    ]
    call_rtts = [r["call_s"] / (2 * r["one_way_s"]) for r in ok if r["one_way_s"] > 0]
    return {
        "calls_ok": len(ok),
        "calls_failed": sum(1 for r in rows if not r["ok"]),
        "pooled_connections": sum(1 for r in rows if r["call"] <= 1 and r["pooled"]),
        "connect_rtts_p50": percentile(connect_rtts, 50),
        "connect_rtts_max": max(connect_rtts) if connect_rtts else math.nan,
        "call_rtts_p50": percentile(call_rtts, 50),
        "call_rtts_max": max(call_rtts) if call_rtts else math.nan,
        "call_p50_s": percentile([r["call_s"] for r in ok], 50),
        "call_p99_s": percentile([r["call_s"] for r in ok], 99),
        "bytes_sent": sum(p["bytes_sent"] for p in tables["peers"]),
    }


def plot(tables: Tables, out_dir: Path) -> list[Path]:
    ok = [r for r in tables["rows"] if r["ok"]]
    return [
        plot_cdf(
            out_dir / "latency_cdf.png",
            {
                "connect (dial + Noise XX)": [r["connect_s"] * 1000 for r in ok if r["call"] == 1 and not r["pooled"]],
                "call": [r["call_s"] * 1000 for r in ok],
                "RTT (2 x one-way)": [r["one_way_s"] * 2000 for r in ok],
            },
            xlabel="virtual ms",
            title="rpcping: connect and call latency",
        )
    ]
