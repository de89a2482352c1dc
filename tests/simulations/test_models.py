"""The simulator's own models: warm routing tables, the inference timing model, the channel model."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import trio

from simulations.channels import Job, Policy, locked_ton_hours, replay
from simulations.sweep_plot import series_from_sweep

pytest.importorskip("cocoon_p2p.dht")


def test_warm_tables_put_each_peer_in_its_xor_bucket_and_respect_k() -> None:
    from cocoon_p2p.dht import Dht
    from cocoon_p2p.dht.distance import bucket_index
    from cocoon_p2p.rpc import Host
    from simulations.harness import Seeds, World
    from simulations.latency import ConstantLatency
    from simulations.network import SimNetwork
    from simulations.swarm import warm_tables

    seeds = Seeds(3)
    world = World(SimNetwork(ConstantLatency(0.01), rng=seeds.rng("n")), seeds)
    nodes, k = 300, 8
    ids = [world.identity(i).peer_id for i in range(nodes)]
    addresses = [f"{world.ip(i)}:7400" for i in range(nodes)]
    from cocoon_p2p.dht import DhtConfig

    dhts = {i: Dht(Host(world.identity(i), world.endpoint(i)), world.wall, config=DhtConfig(k=k)) for i in range(nodes)}
    warm_tables(dhts, ids, addresses, random.Random(1), 0.0)
    for i, dht in dhts.items():
        for index, bucket in enumerate(dht.table.buckets):
            assert len(bucket.contacts) <= k
            for contact in bucket.contacts.values():
                assert bucket_index(ids[i].raw, contact.peer_id.raw) == index
        # Every bucket whose range holds at most k peers holds all of them; the others hold k.
        ranges = Counter(bucket_index(ids[i].raw, ids[j].raw) for j in range(nodes) if j != i)
        for index, count in ranges.items():
            assert len(dht.table.buckets[index].contacts) == min(count, k)
    # As in a network that has run a while, buckets were last refreshed at spread times over
    # the last interval (all "now" made every peer refresh everything one interval later).
    stamps = [b.last_changed for dht in dhts.values() for b in dht.table.buckets.existing()]
    interval = DhtConfig().refresh_interval
    assert all(-interval <= t <= 0.0 for t in stamps)
    assert min(stamps) < -0.9 * interval and max(stamps) > -0.1 * interval


async def test_timed_engine_streams_at_the_advertised_rate(autojump_clock) -> None:
    from cocoon_p2p.inference.request import GenerationRequest
    from simulations.engine import TimedEngine

    engine = TimedEngine("m", tokens_per_s=20.0, chunk_tokens=4, prompt_speedup=8)
    start = trio.current_time()
    arrivals = []
    async with engine.stream(GenerationRequest(prompt="tok " * 160, max_tokens=10)) as tokens:
        assert tokens.prompt_tokens == 160
        async for chunk in tokens:
            arrivals.append((trio.current_time() - start, chunk.tokens))
    # 160 prompt tokens at 20 * 8 tokens/s = 1 s, then 4 tokens per 0.2 s.
    assert [n for _, n in arrivals] == [4, 4, 2]
    assert [round(t, 9) for t, _ in arrivals] == [1.2, 1.4, 1.6]
    assert tokens.usage.completion_tokens == 10 and tokens.usage.finish_reason == "length"
    assert engine.running == 0 and engine.jobs == 1


def _job(t: float, client: int, worker: int, budget: int = 10, cost: int = 5, length: float = 10.0) -> Job:
    return Job(t, t + length, client, worker, budget, cost)


def test_channel_model_reuses_a_pair_channel_and_closes_it_when_idle() -> None:
    policy = Policy(idle_close_s=100.0, deposit_multiple=10, deposit_min=50, fine=1)
    jobs = [_job(0, 1, 2), _job(20, 1, 2), _job(40, 1, 2), _job(500, 1, 2)]
    ledger = replay(jobs, policy, horizon=1000.0)
    kinds = [(e["event"], e["t_s"]) for e in ledger.events]
    # Reused for three jobs, idle-closed 100 s after the third ended, reopened for the fourth.
    assert kinds == [("open", 0), ("close", 150.0), ("open", 500), ("close", 610.0)]
    assert [c.jobs for c in ledger.channels] == [3, 1]
    assert ledger.channels[0].deposit == 101 and ledger.channels[0].sent == 15
    assert locked_ton_hours(ledger, 1000.0) > 0


def test_channel_model_opens_a_second_channel_for_concurrent_jobs_and_replaces_exhausted_ones() -> None:
    policy = Policy(idle_close_s=1000.0, deposit_multiple=2, deposit_min=0, fine=0)
    concurrent = replay([_job(0, 1, 2), _job(5, 1, 2)], policy, horizon=100.0)
    assert [e["event"] for e in concurrent.events].count("open") == 2
    # Deposit = 2 budgets; each job costs a whole budget, so the third job needs a fresh channel.
    exhausted = replay([_job(0, 1, 2, cost=10), _job(20, 1, 2, cost=10), _job(40, 1, 2)], policy, horizon=100.0)
    assert [c.how for c in exhausted.channels] == ["exhausted", "end"]
    assert [e["event"] for e in exhausted.events].count("open") == 2


def test_channel_model_force_closes_when_the_worker_is_gone() -> None:
    policy = Policy(idle_close_s=10.0, quarantine_s=3600.0)
    ledger = replay([_job(0, 1, 2)], policy, horizon=100.0, worker_online=lambda w, t: t < 15)
    assert [(e["event"], e["t_s"]) for e in ledger.events] == [
        ("open", 0),
        ("force_close_start", 20.0),
        ("force_close_finish", 3620.0),
    ]


def test_sweep_series_average_over_seeds_and_split_by_other_knobs() -> None:
    rows = [
        {"nodes": "10", "k": "4", "seed": "1", "hops": "1"},
        {"nodes": "10", "k": "4", "seed": "2", "hops": "2"},
        {"nodes": "20", "k": "4", "seed": "1", "hops": "3"},
        {"nodes": "10", "k": "8", "seed": "1", "hops": "nan"},
    ]
    series = series_from_sweep(rows, "nodes", ["hops"], ["k"])
    assert series == {"hops (k=4)": (["10", "20"], [1.5, 3.0])}
