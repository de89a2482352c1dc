"""DHT lookups: ours against the `kademlia` package, same k, α, peer count and layout, same run.

Both networks run on loopback (ours: trio + TCP + Noise; theirs: asyncio + UDP) with the same
layout: PROCS worker processes of PEERS/PROCS peers each (bench/dht_cluster.py), peer i in
process i mod PROCS. Separate processes give each slice its own descriptor budget (the hard
limit here is 20,000), so every pair of our peers can keep its pooled Noise connection as
deployed peers (one per process) would; with all 200 in one process pools had to be capped at
48 links and most queries paid a fresh handshake. kademlia gets the identical split.
Each peer bootstraps from the first and one random earlier peer (kademlia then re-bootstraps
every peer from the first, as before). Warm-up, untimed and the same for both: every pair of
peers pings once, then every peer runs WARM_PER_PEER lookups — a network that has been up a
while, in which (for us) the pooled connections exist. Both networks stay up for the timed part:
each timed lookup asks a random peer for the id of another random peer, one lookup at a time,
the same pair on both networks in turns (so both see the same background load), timed inside
the searcher's process (pipe latency excluded); success = the peer closest to the target (other than the target itself,
which `kademlia` never returns for its own id) is among the contacts returned, or is the
searcher itself (which neither side lists).
Figures: median and p99 latency, success rate, messages (queries) per lookup, CPU per lookup
(all of that side's worker processes: searcher and every peer asked), and for us the Noise
handshakes the searcher still paid per timed lookup. On 2 vCPUs a lookup's latency follows its
CPU: the processes it touches queue for the same two cores.
Target (issue: DHT): our median ≥ 2× faster, success ≥ 99 %.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
from collections.abc import Callable
from typing import Any

from bench.dht_cluster import ALPHA, K, serve_ours, serve_theirs

PEERS = 200
PROCS = 4
LOOKUPS = 300
WARM_PER_PEER = 2  # untimed lookups per peer after the pings (400 in all), run concurrently


def _summary(latencies: list[float], successes: int, messages: list[int], dials: list[int]) -> dict:
    ordered = sorted(latencies)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
        "success": round(successes / len(latencies), 4),
        "messages_per_lookup": round(statistics.mean(messages), 1),
        "handshakes_per_lookup": round(statistics.mean(dials), 2),
    }


class _Cluster:
    """PEERS peers spread over PROCS worker processes; peer i lives in process i % PROCS."""

    def __init__(self, target: Callable[..., None], args: Callable[[int], tuple]) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold an event loop
        self.pipes = []
        self.procs = []
        for w in range(PROCS):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=target, args=(theirs, *args(w)), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        slices = [pipe.recv() for pipe in self.pipes]
        # Global order: peer i = slice (i % PROCS), position (i // PROCS).
        self.peers: list[tuple[bytes, Any]] = [slices[i % PROCS][i // PROCS] for i in range(PEERS)]

    def ask(self, peer: int, *cmd: Any) -> Any:
        pipe = self.pipes[peer % PROCS]
        pipe.send((cmd[0], peer // PROCS, *cmd[1:]))
        return pipe.recv()

    def cpu_s(self) -> float:
        """CPU seconds used so far by all of this side's worker processes."""
        for pipe in self.pipes:
            pipe.send(("cpu",))
        return sum(pipe.recv() for pipe in self.pipes)

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(("stop",))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def _prepare(cluster: _Cluster, *, rebootstrap: bool) -> None:
    boot = random.Random(1)
    for i in range(1, PEERS):
        cluster.ask(i, "bootstrap", [cluster.peers[0], cluster.peers[boot.randrange(i)]])
    if rebootstrap:
        for i in range(1, PEERS):
            cluster.ask(i, "bootstrap", [cluster.peers[0]])
    # Warm-up, untimed: every pair of peers talks once (the lower index pings the higher), then
    # WARM_PER_PEER lookups per peer; all processes at once.
    plans: list[list] = [[] for _ in range(PROCS)]
    for g in range(PEERS):
        plans[g % PROCS].append((g // PROCS, cluster.peers[g + 1 :]))
    for pipe, plan in zip(cluster.pipes, plans, strict=True):
        pipe.send(("meet", plan))
    met = sum(pipe.recv() for pipe in cluster.pipes)
    assert met >= 0.99 * PEERS * (PEERS - 1) / 2, f"only {met} pings answered"
    targets = [raw for raw, _ in cluster.peers]
    for w, pipe in enumerate(cluster.pipes):
        pipe.send(("warm", targets, WARM_PER_PEER, w))
    for pipe in cluster.pipes:
        pipe.recv()


class _Tally:
    def __init__(self, cluster: _Cluster) -> None:
        self.cluster = cluster
        self.ids = [int.from_bytes(raw, "big") for raw, _ in cluster.peers]
        self.latencies: list[float] = []
        self.messages: list[int] = []
        self.dials: list[int] = []
        self.successes = 0

    def lookup(self, searcher: int, target: int) -> None:
        ids = self.ids
        elapsed, queries, closest, opened = self.cluster.ask(searcher, "lookup", self.cluster.peers[target][0])
        self.latencies.append(elapsed)
        self.messages.append(queries)
        self.dials.append(opened)
        nearest = min((i for i in ids if i != ids[target]), key=lambda i: i ^ ids[target])
        # A searcher never lists itself (neither side does), so when it is the nearest peer
        # (1 lookup in 199 on average) it has found it trivially; both sides count it alike.
        self.successes += nearest == ids[searcher] or any(int.from_bytes(raw, "big") == nearest for raw in closest)

    def summary(self) -> dict:
        return _summary(self.latencies, self.successes, self.messages, self.dials)


def _measure(ours: _Cluster, theirs: _Cluster) -> tuple[dict, dict]:
    """The same LOOKUPS (searcher, target) pairs on both networks, taken in turns.

    Alternating one lookup each (who goes first alternates too) puts both sides under the
    same background load, which on a shared machine shifts within seconds; measuring one
    side after the other let that shift into the ratio.
    """
    sides = [_Tally(ours), _Tally(theirs)]
    cpu_before = [ours.cpu_s(), theirs.cpu_s()]
    rng = random.Random(5)
    for n in range(LOOKUPS):
        searcher, target = rng.sample(range(PEERS), 2)
        for side in sides if n % 2 == 0 else sides[::-1]:
            side.lookup(searcher, target)
    cpu_after = [ours.cpu_s(), theirs.cpu_s()]
    figures = []
    for side, before, after in zip(sides, cpu_before, cpu_after, strict=True):
        # Between its own lookups a side is idle (its workers use ~0 CPU then), so this is
        # what one lookup costs the whole network: searcher, every peer asked, and the
        # driver pipe's reader thread (the same on both sides).
        figures.append({**side.summary(), "cpu_ms_per_lookup": round(1000 * (after - before) / LOOKUPS, 2)})
    return figures[0], figures[1]


def _ours_cluster() -> _Cluster:
    per = PEERS // PROCS
    return _Cluster(serve_ours, lambda w: (per, 1000 * w))


def _theirs_cluster() -> _Cluster:
    base = 43000 + random.Random().randrange(2000)
    ports = [base + i for i in range(PEERS)]
    return _Cluster(serve_theirs, lambda w: (ports[w::PROCS],))


def run() -> dict:
    clusters: list[_Cluster] = []
    try:
        clusters.append(_ours_cluster())
        _prepare(clusters[0], rebootstrap=False)
        clusters.append(_theirs_cluster())
        _prepare(clusters[1], rebootstrap=True)
        ours, theirs = _measure(*clusters)
    finally:
        for cluster in clusters:
            cluster.close()
    ratio = theirs["median_ms"] / ours["median_ms"]
    print(
        f"DHT lookups, {PEERS} peers on loopback in {PROCS} processes per side, k={K}, alpha={ALPHA}, "
        f"{LOOKUPS} lookups each, taken in turns"
    )
    for name, fig in (("cocoon-p2p", ours), ("kademlia (bmuller)", theirs)):
        print(
            f"  {name:<19} median {fig['median_ms']:7.2f} ms  p99 {fig['p99_ms']:7.2f} ms  "
            f"success {fig['success'] * 100:5.1f} %  messages/lookup {fig['messages_per_lookup']:5.1f}  "
            f"CPU/lookup {fig['cpu_ms_per_lookup']:5.2f} ms"
        )
    print(f"  cocoon-p2p cold Noise handshakes per timed lookup: {ours['handshakes_per_lookup']}")
    print(f"  median speed-up: {ratio:.2f}x (target >= 2x)")
    return {"ours": ours, "kademlia": theirs, "median_speedup": round(ratio, 2)}


if __name__ == "__main__":
    run()
