"""market: workers with a price distribution and capacities, clients issuing jobs, real auctions.

Peer 0 is a bootstrap-only peer; peers 1..W are workers (``worker_share`` of the
rest), the others clients (``simulations.market_peers``: production
``WorkerMarket``/``WorkerSession`` and ``ClientMarket``/``CocoonClient``;
inference is the ``TimedEngine`` timing model, payments the session's unpaid
ledger mode). Each worker asks a log-normal price around ``price_median``
(nanoTON per 1M completion tokens; prompt tokens cost a quarter), has
``max_jobs`` slots drawn from ``capacity`` and a log-normal tokens/s. Jobs
arrive as a Poisson stream at a rate set by ``demand``: the offered load as a
share of the workers' total token throughput (1.0 = every slot busy on average).
Each job is a full ``CocoonClient.complete``: RFQ, sealed bids for
``bid_window_s``, award, job stream with per-chunk payments, failover.

First vs second price: ``--rule second`` is the production rule (the winner is
paid the runner-up's price). ``--rule first`` pays the winner its own bid, by
replacing the clearing step in a ``ClientMarket`` subclass (ranking unchanged).
Every job row also carries the price and cost under the *other* rule, computed
from the same bids with the production ``clearing_prices`` — the comparison
holds bids fixed, so it shows the mechanical difference, not the bid shading
that first-price bidders would adopt.
"""

from __future__ import annotations

import math
import statistics
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..engine import PROMPT_SPEEDUP
from ..harness import Knob, Progress, Seeds, World, percentile
from ..results import Tables, plot_cdf, plot_points
from ..swarm import SWARM_KNOBS, Peer, Swarm, churn_schedules, dht_config, simulate_swarm

NAME = "market"
QUESTION = (
    "With workers of different prices and capacities and clients issuing jobs at a given demand, "
    "what prices do clients pay and workers earn under second-price (production) vs first-price awards?"
)
KNOBS: dict[str, Knob] = {
    "nodes": Knob(100, "number of simulated peers (1 bootstrap, workers, clients)"),
    "one_way_ms": Knob(50.0, "one-way delay: the constant, or the largest across the plane for coords"),
    **SWARM_KNOBS,
    "join": Knob("warm", "protocol: peers bootstrap through the DHT; warm: DHT starts converged"),
    "join_spread_s": Knob(30.0, "join protocol: peers join at uniform random times over this many seconds"),
    "worker_share": Knob(0.25, "share of peers (bootstrap excluded) that are workers"),
    "price_median": Knob(200_000_000, "median worker ask, nanoTON per 1M completion tokens (prompt: a quarter)"),
    "price_sigma": Knob(0.3, "log-normal sigma of worker asks"),
    "capacity": Knob("1,2,4", "max concurrent jobs per worker, drawn uniformly from this list"),
    "tps_median": Knob(40.0, "median advertised tokens/s per job slot"),
    "tps_sigma": Knob(0.4, "log-normal sigma of tokens/s"),
    "demand": Knob(0.5, "offered load: job arrival rate x mean job tokens / total worker token throughput"),
    "jobs": Knob(200, "jobs in all (Poisson arrivals at the rate demand sets)"),
    "prompt_tokens": Knob("50:400", "prompt tokens per job, uniform lo:hi"),
    "completion_tokens": Knob("64:512", "completion tokens per job, uniform lo:hi"),
    "max_price_factor": Knob(2.0, "clients' max price, as a multiple of price_median"),
    "bid_window_s": Knob(0.25, "auction bid window (the client default)"),
    "rule": Knob("second", "award price: second (production, Vickrey) or first (winner's own bid)"),
    "transport": Knob("direct", "RFQ transport: direct (production default: RPC to offering workers) or gossip"),
    "chunk_tokens": Knob(8, "tokens per streamed chunk (the session pays per chunk)"),
    "warmup_s": Knob(10.0, "time after start before the first job (offers get published)"),
    "drain_s": Knob(900.0, "after the last arrival, how long running jobs may still take"),
    "sample_every_s": Knob(5.0, "how often the timeline samples busy slots"),
}
WARM_AT = 0.001


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = str(text).partition(":")
    return int(lo), int(hi or lo)


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    from cocoon_p2p.client.types import CompletionRequest
    from cocoon_p2p.errors import CocoonError
    from cocoon_p2p.market import Prices
    from cocoon_p2p.market.auction import clearing_prices
    from cocoon_p2p.session.protocol import job_cost

    from .. import market_peers as mp

    nodes = params["nodes"]
    n_workers = max(1, round((nodes - 1) * params["worker_share"]))
    if nodes < 3 or n_workers >= nodes - 1:
        raise ValueError("the market needs a bootstrap peer, at least one worker and one client")
    if params["rule"] not in ("first", "second"):
        raise ValueError("--rule is first or second")
    warm = params["join"] == "warm"
    workers = list(range(1, n_workers + 1))
    clients = list(range(n_workers + 1, nodes))
    world = World.from_params(params, seeds)
    rng = seeds.rng("market/plan")
    capacities = [int(c) for c in str(params["capacity"]).split(",")]
    specs: dict[int, mp.WorkerSpec] = {}
    for w in workers:
        ask = max(1, round(params["price_median"] * math.exp(rng.gauss(0.0, params["price_sigma"]))))
        tps = max(1.0, params["tps_median"] * math.exp(rng.gauss(0.0, params["tps_sigma"])))
        specs[w] = mp.WorkerSpec(Prices(ask // 4, ask), rng.choice(capacities), round(tps, 3))
    cap_max = round(params["price_median"] * params["max_price_factor"])
    max_prices = Prices(cap_max // 4, cap_max)
    p_lo, p_hi = _range(params["prompt_tokens"])
    c_lo, c_hi = _range(params["completion_tokens"])
    mean_tokens = (c_lo + c_hi) / 2 + (p_lo + p_hi) / 2 / PROMPT_SPEEDUP
    throughput = sum(s.max_jobs * s.tokens_per_s for s in specs.values())
    rate = params["demand"] * throughput / mean_tokens  # jobs per second
    join_end = WARM_AT if warm else params["join_spread_s"]
    t0 = join_end + params["warmup_s"]
    arrivals, t = [], t0
    for _ in range(params["jobs"]):
        t += rng.expovariate(rate)
        arrivals.append((t, rng.choice(clients), rng.randint(p_lo, p_hi), rng.randint(c_lo, c_hi)))
    last = arrivals[-1][0] if arrivals else t0
    progress.set_total(last + 60.0)
    schedules = churn_schedules(params, seeds, nodes, join_end, last + params["drain_s"], "market", keep=(0, *clients))
    join_at = [0.0] + [0.0 if warm else rng.uniform(0.0, join_end) for _ in range(1, nodes)]

    async def build(peer: Peer) -> None:
        transport = mp.make_transport(params["transport"], peer, world, seeds)
        if peer.index in specs:
            await mp.build_worker(peer, specs[peer.index], transport, world, params["chunk_tokens"])
        elif peer.index != 0:
            await mp.build_client(
                peer, transport, world, seeds, max_prices=max_prices, bid_window=params["bid_window_s"],
                first_price=params["rule"] == "first",
            )  # fmt: skip
        elif "gossip" in peer.extra:
            await peer.nursery.start(peer.extra["gossip"].run)

    async def ready(peer: Peer) -> None:
        if peer.index in specs:
            await mp.start_worker(peer)

    swarm = Swarm(world, nodes, dht_config=dht_config(params), prefix="market", build=build, ready=ready)
    by_peer_id = {str(pid): i for i, pid in enumerate(swarm.ids)}
    rows: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    earned: dict[int, int] = {}
    pending = [0]
    all_done = trio.Event()

    async def job(n: int, client: int, prompt: int, completion: int) -> None:
        peer = swarm.online[client]
        started = trio.current_time()
        row: dict[str, Any] = {"job": n, "t_s": started, "client": client, "status": "aborted"}
        rows.append(row)
        result = None
        try:
            request = CompletionRequest(model=mp.MODEL, prompt="tok " * prompt, max_tokens=completion)
            result = await peer.extra["client"].complete(request)
            row["status"] = "ok"
        except CocoonError as exc:
            row["status"] = type(exc).__name__
        finally:
            pending[0] -= 1
            if pending[0] == 0:
                all_done.set()
        outcome = peer.extra["market"].outcomes.pop(trio.lowlevel.current_task(), None)
        row.update(_job_fields(outcome, result, prompt, completion, started, by_peer_id, clearing_prices, job_cost))

    async def arrivals_task() -> None:
        pending[0] = len(arrivals)
        for n, (at, client, prompt, completion) in enumerate(arrivals):
            await trio.sleep_until(at)
            swarm.online[client].nursery.start_soon(job, n, client, prompt, completion)
        if not arrivals:
            all_done.set()

    async def sampler() -> None:
        total = sum(s.max_jobs for s in specs.values())
        while True:
            busy = sum(swarm.online[w].extra["engine"].running for w in workers if w in swarm.online)
            timeline.append({"t_s": trio.current_time(), "busy_slots": busy, "capacity": total})
            await trio.sleep(params["sample_every_s"])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                nursery.start_soon(partial(swarm.life, i, join_at[i], schedules[i], join=not warm))
            if warm:
                await trio.sleep_until(WARM_AT)
                swarm.warm_up(seeds.rng("market/warm"), trio.current_time())
                await swarm.start_ready()
            nursery.start_soon(sampler)
            await arrivals_task()
            with trio.move_on_at(last + params["drain_s"]):
                await all_done.wait()
            for w in workers:
                if w in swarm.online:
                    earned[w] = swarm.online[w].extra["session"].stats.earned
            stats.update({w: _worker_stats(swarm.online[w]) for w in workers if w in swarm.online})
            nursery.cancel_scope.cancel()

    stats: dict[int, dict[str, int]] = {}
    simulate_swarm(main, seeds=seeds, progress=progress)
    rows.sort(key=lambda r: r["job"])
    worker_rows = []
    for w in workers:
        mine = [r for r in rows if r.get("winner") == w and r["status"] == "ok"]
        worker_rows.append(
            {
                "worker": w,
                "ask_completion": specs[w].prices.completion,
                "max_jobs": specs[w].max_jobs,
                "tokens_per_s": specs[w].tokens_per_s,
                **stats.get(w, dict.fromkeys(_WORKER_STATS, 0)),
                "earned": earned.get(w, 0),
                "earned_second": sum(r["cost_second"] for r in mine),
                "earned_first": sum(r["cost_first"] for r in mine),
            }
        )
    churn = [{"peer": w, "start_s": a, "end_s": b} for w in workers for a, b in schedules[w]]
    return {"rows": rows, "workers": worker_rows, "timeline": timeline, "churn": churn}


_WORKER_STATS = ("rfqs", "bids", "awards", "jobs_finished", "jobs_failed", "tokens_served")


def _worker_stats(peer: Peer) -> dict[str, int]:
    market, session = peer.extra["market"], peer.extra["session"]
    return {
        "rfqs": market.stats["rfq_accepted"],
        "bids": market.stats["bids_sent"],
        "awards": market.stats["awards_accepted"],
        "jobs_finished": session.stats.jobs_finished,
        "jobs_failed": session.stats.jobs_failed,
        "tokens_served": session.stats.tokens_served,
    }


def _job_fields(
    outcome: Any, result: Any, prompt: int, completion: int, started: float, by_peer_id: dict[str, int],
    clearing_prices: Any, job_cost: Any,
) -> dict[str, Any]:  # fmt: skip
    fields: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "bids": 0,
        "refused_awards": 0,
        "winner": -1,
        "ask_completion": -1,
        "runner_up_completion": -1,
        "price_second": -1,
        "price_first": -1,
        "price_paid": -1,
        "price_paid_prompt": -1,
        "cost_second": 0,
        "cost_first": 0,
        "paid": 0,
        "duration_s": trio.current_time() - started,
    }
    if outcome is None:
        return fields
    ranked = outcome.ranked
    winner = outcome.winner
    runner_up = ranked[1].prices if len(ranked) > 1 else None
    second = clearing_prices(winner.prices, runner_up, outcome.rfq.max_prices)
    first = winner.prices
    fields.update(
        bids=outcome.bids_received,
        refused_awards=len(outcome.tried),
        winner=by_peer_id.get(str(winner.worker_id), -1),
        ask_completion=winner.prices.completion,
        runner_up_completion=runner_up.completion if runner_up else -1,
        price_second=second.completion,
        price_first=first.completion,
        price_paid=outcome.clearing.completion,
        price_paid_prompt=outcome.clearing.prompt,
        cost_second=job_cost(second.prompt, second.completion, prompt, completion),
        cost_first=job_cost(first.prompt, first.completion, prompt, completion),
    )
    if result is not None:
        fields["paid"] = result.cost_nanoton
    return fields


def summarize(tables: Tables) -> dict[str, Any]:
    rows = tables["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    workers = tables["workers"]
    busy = [s["busy_slots"] / s["capacity"] for s in tables["timeline"] if s["capacity"]]
    return {
        "jobs": len(rows),
        "completed": len(ok) / len(rows) if rows else math.nan,
        "bids_mean": statistics.fmean(r["bids"] for r in ok) if ok else math.nan,
        "price_paid_mean": statistics.fmean(r["price_paid"] for r in ok) if ok else math.nan,
        "price_second_mean": statistics.fmean(r["price_second"] for r in ok) if ok else math.nan,
        "price_first_mean": statistics.fmean(r["price_first"] for r in ok) if ok else math.nan,
        "second_over_first": (sum(r["cost_second"] for r in ok) / max(1, sum(r["cost_first"] for r in ok)))
        if ok
        else math.nan,
        "paid_total": sum(r["paid"] for r in ok),
        "duration_p50_s": percentile([r["duration_s"] for r in ok], 50),
        "duration_p99_s": percentile([r["duration_s"] for r in ok], 99),
        "utilization_mean": statistics.fmean(busy) if busy else math.nan,
        "workers_with_rfqs": sum(1 for w in workers if w["rfqs"] > 0) / len(workers) if workers else math.nan,
        "workers_with_jobs": sum(1 for w in workers if w["jobs_finished"] > 0) / len(workers) if workers else math.nan,
    }


def plot(tables: Tables, out_dir: Path) -> list[Path]:
    ok = [r for r in tables["rows"] if r["status"] == "ok"]
    workers = tables["workers"]
    scale = 1e-6  # nanoTON per 1M tokens -> milliTON per 1M tokens
    return [
        plot_cdf(
            out_dir / "prices_cdf.png",
            {
                "winner's ask": [r["ask_completion"] * scale for r in ok],
                "second price (runner-up)": [r["price_second"] * scale for r in ok],
                "paid": [r["price_paid"] * scale for r in ok],
            },
            xlabel="completion price, milliTON per 1M tokens",
            title="market: prices per job (same bids)",
        ),
        plot_points(
            out_dir / "earnings.png",
            {
                rule: ([w["ask_completion"] * scale for w in workers], [w[f"earned_{rule}"] * 1e-9 for w in workers])
                for rule in ("second", "first")
            },
            xlabel="worker ask, milliTON per 1M completion tokens",
            ylabel="earned, TON",
            title="market: worker earnings by ask, second vs first price",
        ),
    ]
