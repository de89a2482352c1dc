"""payments: channel opens, closes and on-chain messages per 1,000 jobs under the channel policy.

Two parts, and only the first is production code:

1. **Real:** the job stream. The scenario runs the ``market`` scenario with the
   same knobs (real DHT, market, session and client code on the simulated
   network; inference is the timing model, payments the session's unpaid ledger
   mode) and takes every completed job: client, winning worker, start and end in
   virtual time, the clearing prices and the tokens.
2. **Modelled:** the channels. ``simulations.channels.replay`` runs that stream
   through the channel-per-(client, worker) policy with idle close, the deposit
   rule and the contract facts of DESIGN.md §9 (top-up only before init, one
   message to open, one to close cooperatively, two to force-close), and counts
   what would go on chain. No state is signed and no chain is touched.

A job's budget (what the deposit must cover) is computed as the client library
does: the clearing prices applied to four times the estimated prompt tokens plus
the requested completion tokens. A channel whose worker is offline when it falls
idle is force-closed (with ``--churn``, workers come and go).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..channels import Job, Policy, locked_ton_hours, replay
from ..harness import Knob, Progress, Seeds
from ..results import Tables, plot_cdf, plot_lines
from . import market

NAME = "payments"
QUESTION = (
    "Under one channel per (client, worker) with idle close, how many channel opens, closes and on-chain "
    "messages does every 1,000 jobs cost, and how much deposit does it lock up?"
)
CHANNEL_KNOBS = ("idle_close_s", "deposit_multiple", "deposit_min_nanoton", "fine_nanoton", "quarantine_s")
KNOBS: dict[str, Knob] = {
    **market.KNOBS,
    "nodes": Knob(40, "number of simulated peers (1 bootstrap, workers, clients)"),
    "jobs": Knob(400, "jobs in the market run that drives the channels"),
    "demand": Knob(0.05, "offered load of the market run (low: jobs spread over a long stretch of time)"),
    # Defaults are the node's (cocoon_p2p/node/config.py, payments.params.DEFAULT_CLOSING).
    "idle_close_s": Knob(300.0, "a channel unused this long is closed by the client"),
    "deposit_multiple": Knob(20, "a new channel's deposit covers this many budgets of the job that opens it"),
    "deposit_min_nanoton": Knob(100_000_000, "smallest deposit, nanoTON (0.1 TON)"),
    "fine_nanoton": Knob(10_000_000, "misbehaviour fine kept aside in every deposit, nanoTON"),
    "quarantine_s": Knob(3600.0, "force close: time between start and finish"),
}


#: Market runs by (market knobs, seed): a serial sweep over the channel knobs simulates the market once.
_STREAMS: dict[tuple[Any, ...], Tables] = {}


def _job_stream(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    key = (seeds.master, *sorted((k, str(v)) for k, v in params.items() if k not in CHANNEL_KNOBS))
    if key not in _STREAMS:
        _STREAMS.clear()
        _STREAMS[key] = market.run(params, seeds, progress)
    return _STREAMS[key]


def run(params: dict[str, Any], seeds: Seeds, progress: Progress) -> Tables:
    from cocoon_p2p.session.protocol import job_cost

    tables = _job_stream(params, seeds, progress)
    jobs = []
    for row in tables["rows"]:
        if row["status"] != "ok" or row["winner"] < 0:
            continue
        estimate = row["prompt_tokens"] + 8  # the client estimates len(text) // 4 + 8 tokens
        budget = job_cost(row["price_paid_prompt"], row["price_paid"], estimate * 4, row["completion_tokens"])
        jobs.append(Job(row["t_s"], row["t_s"] + row["duration_s"], row["client"], row["winner"], budget, row["paid"]))
    policy = Policy(
        idle_close_s=params["idle_close_s"],
        deposit_multiple=params["deposit_multiple"],
        deposit_min=params["deposit_min_nanoton"],
        fine=params["fine_nanoton"],
        quarantine_s=params["quarantine_s"],
    )
    horizon = max((j.t_end for j in jobs), default=0.0) + params["idle_close_s"]
    sessions: dict[int, list[tuple[float, float]]] = {}
    for s in tables["churn"]:
        sessions.setdefault(s["peer"], []).append((s["start_s"], s["end_s"]))

    def worker_online(worker: int, t: float) -> bool:
        spans = sessions.get(worker)
        if not spans:
            return True
        return t < spans[0][0] or any(a <= t < b for a, b in spans)

    ledger = replay(jobs, policy, horizon, worker_online)
    channels = [
        {
            "channel": ch.cid,
            "client": ch.client,
            "worker": ch.worker,
            "deposit": ch.deposit,
            "opened_s": ch.opened,
            "closed_s": ch.closed if ch.closed is not None else math.nan,
            "how": ch.how,
            "jobs": ch.jobs,
            "sent": ch.sent,
        }
        for ch in ledger.channels
    ]
    meta = [{"horizon_s": horizon, "locked_ton_hours": locked_ton_hours(ledger, horizon)}]
    return {"rows": channels, "onchain": ledger.events, "jobs": tables["rows"], "meta": meta}


def summarize(tables: Tables) -> dict[str, Any]:
    channels = tables["rows"]
    events = tables["onchain"]
    done = [j for j in tables["jobs"] if j["status"] == "ok"]
    n = len(done)
    per_k = 1000.0 / n if n else math.nan

    def count(kind: str) -> int:
        return sum(1 for e in events if e["event"] == kind)

    by_how = {how: sum(1 for c in channels if c["how"] == how) for how in ("cooperative", "forced", "exhausted", "end")}
    return {
        "jobs": n,
        "channels": len(channels),
        "pairs": len({(c["client"], c["worker"]) for c in channels}),
        "opens_per_1000_jobs": count("open") * per_k,
        "closes_per_1000_jobs": (count("close") + count("force_close_start")) * per_k,
        "force_closes_per_1000_jobs": count("force_close_start") * per_k,
        "exhausted_per_1000_jobs": by_how["exhausted"] * per_k,
        "onchain_messages_per_1000_jobs": sum(e["messages"] for e in events) * per_k,
        "jobs_per_channel_mean": statistics.fmean(c["jobs"] for c in channels) if channels else math.nan,
        "deposit_used_mean": statistics.fmean(c["sent"] / c["deposit"] for c in channels) if channels else math.nan,
        "locked_ton_hours_per_1000_jobs": tables["meta"][0]["locked_ton_hours"] * per_k,
        "paid_ton": sum(j["paid"] for j in done) / 1e9,
    }


def plot(tables: Tables, out_dir: Path) -> list[Path]:
    done = sorted((j for j in tables["jobs"] if j["status"] == "ok"), key=lambda j: j["t_s"])
    events = sorted(tables["onchain"], key=lambda e: e["t_s"])
    times = sorted({j["t_s"] for j in done} | {e["t_s"] for e in events})
    jobs_by, ops_by, ji, ei, jc, oc = [], [], 0, 0, 0, 0
    for t in times:
        while ji < len(done) and done[ji]["t_s"] <= t:
            jc, ji = jc + 1, ji + 1
        while ei < len(events) and events[ei]["t_s"] <= t:
            oc, ei = oc + events[ei]["messages"], ei + 1
        jobs_by.append(jc)
        ops_by.append(oc)
    return [
        plot_lines(
            out_dir / "onchain_vs_jobs.png",
            [t / 60 for t in times],
            {"jobs done": jobs_by, "on-chain messages": ops_by},
            xlabel="virtual time (min)",
            ylabel="cumulative count",
            title="payments: jobs and on-chain messages",
        ),
        plot_cdf(
            out_dir / "jobs_per_channel_cdf.png",
            {"jobs per channel": [float(c["jobs"]) for c in tables["rows"]]},
            xlabel="jobs carried by one channel",
            title="payments: channel reuse",
        ),
    ]
