"""Seeds, the deterministic runner, churn models and latency models."""

from __future__ import annotations

import random
import statistics

import pytest
import trio

from simulations.churn import ChurnModel, Exponential, Pareto, Weibull, parse_distribution, run_churned
from simulations.harness import Seeds, SimulationStalled, host_ip, percentile, simulate
from simulations.latency import TICK, CoordinateLatency, RegionLatency, make_latency, quantize


def test_seed_substreams_are_deterministic_and_independent() -> None:
    a, b = Seeds(7), Seeds(7)
    assert a.rng("churn").random() == b.rng("churn").random()
    assert a.rng("churn").random() != a.rng("latency").random()
    assert Seeds(7).rng("churn").random() != Seeds(8).rng("churn").random()
    assert a.identity(3).peer_id == b.identity(3).peer_id
    assert a.identity(3).peer_id != a.identity(4).peer_id


async def _scheduler_trace() -> tuple[tuple[int, int], ...]:
    trace: list[tuple[int, int]] = []

    async def worker(name: int) -> None:
        for step in range(20):
            trace.append((name, step))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for name in range(5):
            nursery.start_soon(worker, name)
    return tuple(trace)


def test_simulate_pins_the_trio_scheduler_to_the_seed() -> None:
    runs = {simulate(_scheduler_trace, seeds=Seeds(1)) for _ in range(4)}
    assert len(runs) == 1
    others = {simulate(_scheduler_trace, seeds=Seeds(s)) for s in range(2, 8)}
    assert len(others | runs) > 1  # the seed does steer the interleaving


def test_simulate_runs_on_virtual_time() -> None:
    async def long_sleep() -> float:
        await trio.sleep(86_400.0)
        return trio.current_time()

    assert simulate(long_sleep, seeds=Seeds(1)) == 86_400.0


def test_simulate_polls_the_os_rarely_yet_still_hears_its_wakeup_socket() -> None:
    # The loop skips most of its zero-timeout epoll calls (harness.OS_POLL_EVERY); a callback
    # queued with run_sync_soon (delivered through trio's wakeup socket, as Ctrl-C is) still runs.
    async def main() -> str:
        manager = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
        heard = trio.Event()
        trio.lowlevel.current_trio_token().run_sync_soon(heard.set)
        await heard.wait()
        return type(manager).__name__

    assert simulate(main, seeds=Seeds(1), limit=1e6) == "RarelyPolled"


def test_simulate_reports_a_deadlock_instead_of_hanging() -> None:
    async def stuck() -> None:
        await trio.Event().wait()

    with pytest.raises(SimulationStalled):
        simulate(stuck, seeds=Seeds(1), limit=100.0)


@pytest.mark.parametrize(
    "dist", [Exponential(600.0), Weibull(600.0, 0.5), Weibull(600.0, 2.0), Pareto(600.0, 2.5)], ids=repr
)
def test_session_models_have_the_configured_mean(dist) -> None:
    rng = random.Random(42)
    samples = [dist.sample(rng) for _ in range(100_000)]
    assert all(s >= 0 for s in samples)
    # Heavy tails converge slowly; 10% is still far tighter than the gap between models.
    assert statistics.fmean(samples) == pytest.approx(600.0, rel=0.10)


def test_heavy_tailed_models_really_are_heavier() -> None:
    rng = random.Random(1)
    exp = sorted(Exponential(600.0).sample(rng) for _ in range(50_000))
    weib = sorted(Weibull(600.0, 0.5).sample(rng) for _ in range(50_000))
    assert percentile(weib, 50) < percentile(exp, 50)  # many short sessions
    assert percentile(weib, 99.9) > percentile(exp, 99.9)  # and a few very long ones


def test_parse_distribution_and_bad_input() -> None:
    assert parse_distribution("exp:60") == Exponential(60.0)
    assert parse_distribution("weibull:60:0.7") == Weibull(60.0, 0.7)
    assert parse_distribution("pareto:60:3") == Pareto(60.0, 3.0)
    with pytest.raises(ValueError):
        parse_distribution("pareto:60:1")  # infinite mean
    with pytest.raises(ValueError):
        parse_distribution("normal:60")


def test_churn_schedule_is_ordered_disjoint_and_bounded() -> None:
    model = ChurnModel(Weibull(300.0, 0.6), Exponential(120.0))
    intervals = model.schedule(random.Random(3), 10_000.0)
    assert intervals
    previous_end = -1.0
    for start, end in intervals:
        assert 0.0 <= start < end <= 10_000.0
        assert start > previous_end
        previous_end = end
    assert model.schedule(random.Random(3), 10_000.0) == intervals
    online = sum(end - start for start, end in intervals) / 10_000.0
    assert 0.3 < online < 0.95


def test_run_churned_runs_the_peer_only_inside_its_intervals() -> None:
    seen: list[tuple[int, float, float]] = []

    async def peer(index: int) -> None:
        started = trio.current_time()
        try:
            await trio.sleep_forever()
        finally:
            seen.append((index, started, trio.current_time()))

    async def main() -> None:
        await run_churned([(10.0, 20.0), (50.0, 55.0)], peer)

    simulate(main, seeds=Seeds(1))
    assert seen == [(0, 10.0, 20.0), (1, 50.0, 55.0)]


def test_latency_models_are_fixed_per_pair_and_on_the_grid() -> None:
    rng = random.Random(5)
    for model in (CoordinateLatency(max_one_way=0.1), RegionLatency(), make_latency("constant", one_way_ms=20)):
        for i in range(20):
            model.register(host_ip(i), rng)
        a, b = host_ip(1), host_ip(2)
        assert model.one_way(a, b) == model.one_way(b, a) == model.one_way(a, b)
    assert quantize(0.0301) % TICK == 0.0
    assert quantize(0.0301) >= 0.0301
    coords = CoordinateLatency(base=0.002, max_one_way=0.1)
    coords.place("x", 0.0, 0.0)
    coords.place("y", 1.0, 1.0)
    assert coords.one_way("x", "y") == pytest.approx(0.1)


def test_region_matrix_must_be_complete() -> None:
    with pytest.raises(ValueError):
        RegionLatency({"a": {"a": 0.01, "b": 0.05}, "c": {"c": 0.01}})


def test_host_ips_are_distinct_and_spread_over_slash24s() -> None:
    ips = [host_ip(i) for i in range(5000)]
    assert len(set(ips)) == 5000
    slash24 = {ip.rsplit(".", 1)[0] for ip in ips[:256]}
    assert len(slash24) == 256
