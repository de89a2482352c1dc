"""attacks: Sybil peers in the DHT and the gossip mesh, and a gossip spammer.

A share ``sybil_fraction`` of the peers (never peer 0) run ``simulations.sybil``:
their DHT answers lookups with wrong routes (``--sybil-mode others | random |
close | drop``) and drops stores, and (with ``--sybil-gossip drop``) they sit in
gossip meshes forwarding nothing. ``spammers`` further peers publish on the
topic at ``spam_rate`` messages/s: ``invalid`` spam fails the subscribers' topic
validator (the gossip score should graylist the spammer), ``valid`` spam passes
it (pure load). Honest peers meanwhile run ``lookups`` DHT lookups (half
``find_peer`` for honest targets, half ``closest`` — overlap with the true k
closest *honest* peers) and publish ``messages`` gossip messages; reach counts
honest subscribers only. Every honest peer runs unmodified production code.

The question is answered by sweeping ``sybil_fraction`` (and the mode), e.g.
``python -m simulations sweep attacks --grid sybil_fraction=0,0.1,0.2,0.3,0.5``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..harness import Knob, Progress, Seeds, World, host_ip, percentile
from ..results import Tables, plot_cdf
from ..swarm import SWARM_KNOBS, Peer, Swarm, dht_config, simulate_swarm
from .gossip import TAG, count_copies, gossip_config, message_index

NAME = "attacks"
QUESTION = (
    "As the share of Sybil peers grows, how often do DHT lookups still find the right peers, how far do "
    "gossip messages still reach, and what does a spamming peer cost?"
)
KNOBS: dict[str, Knob] = {
    "nodes": Knob(200, "number of simulated peers (Sybils and spammers included)"),
    "one_way_ms": Knob(50.0, "one-way delay: the constant, or the largest across the plane for coords"),
    **{k: v for k, v in SWARM_KNOBS.items() if k not in ("join", "churn", "downtime")},
    "sybil_fraction": Knob(0.2, "share of peers that are Sybils"),
    "sybil_mode": Knob("others", "DHT misbehaviour: others (eclipse) | random | close (forged near ids) | drop"),
    "sybil_gossip": Knob("drop", "Sybils in gossip: drop (forward nothing) | honest"),
    "spammers": Knob(1, "peers that flood the topic"),
    "spam_rate": Knob(20.0, "messages per second from each spammer"),
    "spam_kind": Knob("invalid", "invalid (fails the topic validator) | valid (passes it)"),
    "d": Knob(6, "gossip mesh degree D"),
    "lookups": Knob(100, "DHT lookups by honest peers (half find_peer, half closest)"),
    "messages": Knob(10, "gossip messages published by honest peers"),
    "warmup_s": Knob(30.0, "time after the warm start before measuring (meshes form)"),
    "duration_s": Knob(60.0, "measurement window (lookups, messages and spam)"),
    "deadline_s": Knob(10.0, "a gossip copy later than this counts as a miss"),
    "lookup_grace_s": Knob(120.0, "how long after the window lookups may still finish (unfinished ones fail)"),
}
TOPIC = "rfq/sim-model"
SPAM = b"sim-spam"
WARM_AT = 0.001


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    from cocoon_p2p.dht import Dht
    from cocoon_p2p.gossip import Gossip

    from ..sybil import SybilDht, blackhole_gossip

    nodes = params["nodes"]
    rng = seeds.rng("attacks/plan")
    n_sybil = min(nodes - 3, round(params["sybil_fraction"] * nodes))
    n_spam = params["spammers"]
    picked = rng.sample(range(1, nodes), n_sybil + n_spam)
    sybils, spammers = set(picked[:n_sybil]), sorted(picked[n_sybil:])
    honest = [i for i in range(nodes) if i not in sybils and i not in spammers]
    world = World.from_params(params, seeds)
    config = dht_config(params)
    t0 = WARM_AT + params["warmup_s"]
    end = t0 + params["duration_s"]
    progress.set_total(end + params["deadline_s"])
    ids = [world.identity(i).peer_id for i in range(nodes)]
    colluders = sorted((ids[i].as_int, ids[i].raw, f"{host_ip(i)}:7400") for i in sybils)
    dead = [f"{host_ip(nodes + j)}:7400" for j in range(64)]  # addresses where nothing listens

    def make_dht(i: int, host: Any, dht_rng: Any) -> Any:
        if i not in sybils:
            return Dht(host, world.wall, config=config, rng=dht_rng)
        dht = SybilDht(host, world.wall, config=config, rng=dht_rng)
        dht.configure(params["sybil_mode"], colluders, dead, seeds.rng(f"attacks/fake/{i}"))
        return dht

    copies: Counter[tuple[int, int]] = Counter()
    firsts: dict[tuple[int, int], tuple[float, int]] = {}
    published: dict[int, float] = {}
    dropped = [0]

    def validator(msg: Any) -> bool:
        data = msg.data
        return data.startswith(TAG) or (params["spam_kind"] == "valid" and data.startswith(SPAM))

    async def drain(peer: Peer, channel: Any) -> None:
        async for msg in channel:
            n = message_index(msg.data)
            if n is not None and n in published and (n, peer.index) not in firsts:
                firsts[(n, peer.index)] = (trio.current_time() - published[n], msg.hops)

    async def build(peer: Peer) -> None:
        gossip = Gossip(
            peer.host, peer.dht, world.wall, seeds.rng(f"attacks/gossip/{peer.index}"), gossip_config(params["d"])
        )
        gossip.add_validator(TOPIC, validator)
        await peer.nursery.start(gossip.run)
        peer.extra["gossip"] = gossip
        if peer.index in sybils and params["sybil_gossip"] == "drop":
            blackhole_gossip(peer.host, dropped)
        elif peer.index in honest:
            count_copies(peer, copies)

    async def ready(peer: Peer) -> None:
        channel = peer.extra["gossip"].subscribe(TOPIC)
        peer.nursery.start_soon(drain, peer, channel)

    swarm = Swarm(world, nodes, dht_config=config, prefix="attacks", build=build, ready=ready, make_dht=make_dht)
    lookup_rows: list[dict[str, Any] | None] = [None] * params["lookups"]
    running = [0]

    async def lookup(n: int, src: int, kind: str, target: Any, truth: set[Any]) -> None:
        dht = swarm.online[src].dht
        started = trio.current_time()
        row = lookup_rows[n] = {"t_s": started, "src": src, "kind": kind, "ok": 0, "overlap": math.nan,
                                "hops": 0, "queries": 0, "failures": 0, "elapsed_s": math.nan}  # fmt: skip
        running[0] += 1
        try:
            if kind == "find_peer":
                row["ok"] = int(swarm.addresses[target] in await dht.find_peer(ids[target]))
            else:
                result = await dht.lookup_nodes(target)
                got = {c.peer_id for c in result.closest}
                row.update(hops=result.hops, queries=result.queries, failures=result.failures)
                row["overlap"] = len(got & truth) / len(truth) if truth else math.nan
                row["ok"] = int(row["overlap"] == 1.0)
            row["elapsed_s"] = trio.current_time() - started
        finally:
            running[0] -= 1

    async def lookups() -> None:
        lrng = seeds.rng("attacks/lookups")
        plan = sorted(lrng.uniform(t0, end) for _ in range(params["lookups"]))
        for n, at in enumerate(plan):
            await trio.sleep_until(at)
            src = lrng.choice(honest)
            if n % 2 == 0:
                target = lrng.choice([j for j in honest if j != src])
                kind, truth = "find_peer", set()
            else:
                target = lrng.randbytes(32)
                near = swarm.closest(int.from_bytes(target, "big"), honest, params["k"], exclude=src)
                kind, truth = "closest", {ids[j] for j in near}
            swarm.online[src].nursery.start_soon(lookup, n, src, kind, target, truth)

    async def publish() -> None:
        prng = seeds.rng("attacks/publish")
        spacing = params["duration_s"] / max(1, params["messages"])
        for n in range(params["messages"]):
            await trio.sleep_until(t0 + n * spacing)
            peer = swarm.online[prng.choice(honest[1:])]
            published[n] = trio.current_time()
            data = TAG + n.to_bytes(4, "big") + prng.randbytes(280)
            peer.nursery.start_soon(peer.extra["gossip"].publish, TOPIC, data)

    async def spam(i: int) -> None:
        if params["spam_rate"] <= 0:
            return
        gossip = swarm.online[i].extra["gossip"]
        srng = seeds.rng(f"attacks/spam/{i}")
        await trio.sleep_until(t0)
        while trio.current_time() < end:
            body = SPAM + srng.randbytes(280)
            if params["spam_kind"] == "valid":
                await gossip.publish(TOPIC, body)
            else:  # our own validator would refuse it: the spammer sends it raw
                _inject(gossip, body)
            await trio.sleep(1.0 / params["spam_rate"])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                nursery.start_soon(partial(swarm.life, i, 0.0, [], join=False))
            await trio.sleep_until(WARM_AT)
            swarm.warm_up(seeds.rng("attacks/warm"), trio.current_time())
            await swarm.start_ready()
            for i in spammers:
                nursery.start_soon(spam, i)
            nursery.start_soon(publish)
            await lookups()
            await trio.sleep_until(end + params["deadline_s"])
            while running[0] and trio.current_time() < end + params["lookup_grace_s"]:
                await trio.sleep(1.0)
            graylisted.update({i: _graylisted_by(swarm, i, honest) for i in spammers})
            stats.update({i: _gossip_stats(swarm.online[i].extra["gossip"]) for i in honest})
            nursery.cancel_scope.cancel()

    graylisted: dict[int, int] = {}
    stats: dict[int, dict[str, int]] = {}
    simulate_swarm(main, seeds=seeds, progress=progress)
    lookups_table = [r for r in lookup_rows if r is not None]
    gossip_rows = []
    for n, at in sorted(published.items()):
        eligible = [i for i in honest if i != 0]
        got = [firsts[(n, i)] for i in eligible if (n, i) in firsts and firsts[(n, i)][0] <= params["deadline_s"]]
        gossip_rows.append(
            {
                "msg": n,
                "t_s": at,
                "eligible": len(eligible),
                "reach": len(got) / len(eligible),
                "hops_p50": percentile([h for _, h in got], 50),
                "hops_p99": percentile([h for _, h in got], 99),
                "copies_mean": statistics.fmean(copies[(n, i)] for i in eligible),
            }
        )
    peers = [
        {
            "peer": i,
            "role": "sybil" if i in sybils else "spammer" if i in spammers else "honest",
            "graylisted_by": graylisted.get(i, 0),
            **stats.get(i, dict.fromkeys(_STATS, 0)),
            **vars(world.network.stats(swarm.ips[i])),
        }
        for i in range(nodes)
    ]
    return {"rows": lookups_table, "gossip": gossip_rows, "peers": peers}


_STATS = ("received", "invalid", "duplicates", "rate_limited", "ignored_graylisted")


def _inject(gossip: Any, body: bytes) -> None:
    """The spammer's own code: a signed message that fails the topic validator, sent to every known subscriber."""
    from cocoon_p2p.gossip import sign_message

    now_ms = int(gossip.clock.now() * 1000)
    gossip._seqno = max(gossip._seqno + 1, now_ms)
    wire = sign_message(gossip.host.identity, TOPIC, b"junk" + body, seqno=gossip._seqno, ts_ms=now_ms)
    item = {"msgs": [wire], "ids": [gossip.codec.decode(wire).msg_id]}
    for pid in sorted(gossip.known_subscribers(TOPIC), key=lambda p: p.raw):
        gossip._send(pid, item)


def _gossip_stats(gossip: Any) -> dict[str, int]:
    return {name: gossip.metrics.get(name) for name in _STATS}


def _graylisted_by(swarm: Swarm, spammer: int, honest: list[int]) -> int:
    pid = swarm.ids[spammer]
    return sum(1 for i in honest if i in swarm.online and swarm.online[i].extra["gossip"].scores.graylisted(pid))


def summarize(tables: Tables) -> dict[str, Any]:
    rows = tables["rows"]
    # An unfinished lookup counts as a failure (overlap 0).
    finds = [r for r in rows if r["kind"] == "find_peer"]
    closest = [r for r in rows if r["kind"] == "closest"]
    timed = [r["elapsed_s"] for r in rows if not math.isnan(r["elapsed_s"])]
    gossip = tables["gossip"]
    honest = [p for p in tables["peers"] if p["role"] == "honest"]
    spammers = [p for p in tables["peers"] if p["role"] == "spammer"]
    return {
        "lookups": len(rows),
        "unfinished": sum(1 for r in rows if math.isnan(r["elapsed_s"])),
        "find_peer_success": statistics.fmean(r["ok"] for r in finds) if finds else math.nan,
        "closest_overlap_mean": statistics.fmean(0.0 if math.isnan(r["overlap"]) else r["overlap"] for r in closest)
        if closest
        else math.nan,
        "closest_exact": statistics.fmean(r["ok"] for r in closest) if closest else math.nan,
        "lookup_p50_s": percentile(timed, 50),
        "lookup_p99_s": percentile(timed, 99),
        "reach_mean": statistics.fmean(g["reach"] for g in gossip) if gossip else math.nan,
        "reach_min": min((g["reach"] for g in gossip), default=math.nan),
        "copies_per_peer": statistics.fmean(g["copies_mean"] for g in gossip) if gossip else math.nan,
        "invalid_per_honest": statistics.fmean(p["invalid"] for p in honest) if honest else math.nan,
        "spammer_graylisted_share": statistics.fmean(p["graylisted_by"] / len(honest) for p in spammers)
        if spammers and honest
        else math.nan,
    }


def plot(tables: Tables, out_dir: Path) -> list[Path]:
    rows = tables["rows"]
    return [
        plot_cdf(
            out_dir / "lookup_time_cdf.png",
            {kind: [r["elapsed_s"] for r in rows if r["kind"] == kind] for kind in ("find_peer", "closest")},
            xlabel="lookup time (virtual s)",
            title="attacks: honest lookups among Sybils",
        ),
        plot_cdf(
            out_dir / "overlap_cdf.png",
            {"closest: share of true k honest closest found": [r["overlap"] for r in rows if r["kind"] == "closest"]},
            xlabel="overlap",
            title="attacks: lookup correctness",
        ),
    ]
