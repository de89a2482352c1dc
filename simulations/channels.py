"""An event model of payment-channel use: which channels a job stream opens and closes, and when.

This is a *model*, not the payment code: it replays jobs (client, worker, start,
end, budget, cost) through the policy that ``cocoon_p2p.payments.policy`` and
DESIGN.md §9 describe, and counts what would go on chain:

- one channel per (client, worker), reused job after job; a channel carries one
  job at a time, so a second concurrent job to the same worker opens another;
- a new channel's deposit is ``max(minimum, multiple * job budget) + fine``
  (``policy.deposit_for``); the contract takes top-ups only before init, so a
  channel whose remaining deposit cannot cover the next job's budget is closed
  and replaced (one close + one open);
- opening is one message from the client's wallet (deploy + init,
  ``onchain.open_channel``); a cooperative close is one message
  (``close_cooperatively``); a force close is two (``start_uncooperative_close``,
  then ``finish_uncooperative_close`` after the quarantine);
- a channel idle for ``idle_close_s`` is closed: cooperatively when the worker is
  online then, by force otherwise; channels still open at the horizon are counted
  apart (``open_at_end``) and, with ``close_at_end``, closed there.

Amounts are integer nanoTON. Nothing here signs or submits anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Policy:
    idle_close_s: float = 300.0
    deposit_multiple: int = 20  # jobs' worth of budget per deposit
    deposit_min: int = 100_000_000  # nanoTON
    fine: int = 10_000_000  # misbehaviour fine kept aside in every deposit
    quarantine_s: float = 3600.0  # force close: start -> finish
    close_at_end: bool = True


@dataclass(frozen=True)
class Job:
    t_start: float
    t_end: float
    client: int
    worker: int
    budget: int  # most the job may cost (what the deposit must cover)
    cost: int  # what it did cost


@dataclass
class Channel:
    cid: int
    client: int
    worker: int
    deposit: int
    opened: float
    sent: int = 0
    jobs: int = 0
    busy_until: float = 0.0
    last_used: float = 0.0
    closed: float | None = None
    how: str = ""  # cooperative | forced | exhausted | end | open


@dataclass
class Ledger:
    channels: list[Channel] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def onchain(self, t: float, kind: str, channel: Channel, messages: int) -> None:
        self.events.append(
            {"t_s": t, "event": kind, "channel": channel.cid, "client": channel.client, "worker": channel.worker,
             "messages": messages, "deposit": channel.deposit, "sent": channel.sent}
        )  # fmt: skip


def replay(
    jobs: list[Job], policy: Policy, horizon: float, worker_online: Callable[[int, float], bool] | None = None
) -> Ledger:
    """Run the jobs (sorted by start) through the policy up to ``horizon``."""
    online = worker_online or (lambda _w, _t: True)
    ledger = Ledger()
    by_pair: dict[tuple[int, int], list[Channel]] = {}

    def close_idle(now: float) -> None:
        for chans in by_pair.values():
            for ch in chans:
                if ch.closed is None and ch.busy_until <= now:
                    due = max(ch.last_used, ch.busy_until) + policy.idle_close_s
                    if due <= now:
                        _close(ch, due, "cooperative" if online(ch.worker, due) else "forced")

    def _close(ch: Channel, at: float, how: str) -> None:
        ch.closed, ch.how = at, how
        if how == "forced":
            ledger.onchain(at, "force_close_start", ch, 1)
            ledger.onchain(at + policy.quarantine_s, "force_close_finish", ch, 1)
        else:
            ledger.onchain(at, "close", ch, 1)

    for job in sorted(jobs, key=lambda j: (j.t_start, j.client, j.worker)):
        close_idle(job.t_start)
        chans = by_pair.setdefault((job.client, job.worker), [])
        free = [c for c in chans if c.closed is None and c.busy_until <= job.t_start]
        channel = None
        for ch in free:
            if ch.deposit - policy.fine - ch.sent >= job.budget:
                channel = ch
                break
        if channel is None and free:
            # The contract takes no top-up after init: replace an exhausted channel.
            _close(free[0], job.t_start, "exhausted")
        if channel is None:
            deposit = max(policy.deposit_min, policy.deposit_multiple * job.budget) + policy.fine
            channel = Channel(len(ledger.channels), job.client, job.worker, deposit, job.t_start)
            ledger.channels.append(channel)
            chans.append(channel)
            ledger.onchain(job.t_start, "open", channel, 1)
        channel.sent += job.cost
        channel.jobs += 1
        channel.busy_until = job.t_end
        channel.last_used = job.t_end
    close_idle(horizon)
    for ch in ledger.channels:
        if ch.closed is None:
            if policy.close_at_end:
                _close(ch, horizon, "end")
            else:
                ch.how = "open"
    ledger.events.sort(key=lambda e: (e["t_s"], e["channel"], e["event"]))
    return ledger


def locked_ton_hours(ledger: Ledger, horizon: float) -> float:
    """Deposits times the time they stayed locked, in TON-hours (the capital the policy ties up)."""
    total = 0
    for ch in ledger.channels:
        end = ch.closed if ch.closed is not None else horizon
        total += ch.deposit * (end - ch.opened)
    return total / 1e9 / 3600.0
