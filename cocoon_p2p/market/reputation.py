"""Per-worker reputation from this client's own measurements, persisted and decayed.

Counts (successes, failures, failed spot-checks) decay exponentially with a
configurable half-life, so a worker's old record fades and it can recover.
Latency and tokens/s are exponentially weighted moving averages. The weight used
at award time is::

    reliability = (s + prior_s) / (s + f + spot_penalty * x + prior_s + prior_f)
    speed       = sqrt(min(1, latency_target / latency))       (1 when unmeasured)
                * sqrt(min(1, tokens_per_s / tps_target))        (1 when unmeasured or no target)
    weight      = max(min_weight, reliability * speed)            in (0, 1]

A worker we know nothing about gets ``prior_s / (prior_s + prior_f)``.
The file is ``<data dir>/reputation.json``, written atomically (temp + fsync + rename).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..identity import PeerId
from ..net import WallClock

log = logging.getLogger(__name__)

FILE_NAME = "reputation.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ReputationConfig:
    half_life_s: float = 7 * 24 * 3600.0
    prior_successes: float = 4.0
    prior_failures: float = 1.0
    spot_check_penalty: float = 5.0  # a failed spot-check weighs as this many failures
    latency_target_ms: float = 2000.0
    tokens_per_s_target: float = 0.0  # 0 disables the throughput factor
    ewma_alpha: float = 0.3
    min_weight: float = 0.01

    def __post_init__(self) -> None:
        if self.half_life_s <= 0 or self.prior_successes <= 0 or self.prior_failures < 0:
            raise ValueError("half-life and prior successes must be positive, prior failures non-negative")
        if not 0 < self.min_weight <= 1 or not 0 < self.ewma_alpha <= 1:
            raise ValueError("min_weight and ewma_alpha must be in (0, 1]")


@dataclass
class WorkerRecord:
    successes: float = 0.0
    failures: float = 0.0
    spot_check_failures: float = 0.0
    spot_checks_passed: float = 0.0
    latency_ms: float | None = None
    tokens_per_s: float | None = None
    updated_at: float = 0.0  # Unix seconds of the last decay


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


class Reputation:
    def __init__(self, data_dir: Path | None, clock: WallClock, config: ReputationConfig | None = None) -> None:
        """``data_dir`` None keeps everything in memory (tests, throwaway clients)."""
        self.path = data_dir / FILE_NAME if data_dir is not None else None
        self.clock = clock
        self.config = config or ReputationConfig()
        self.workers: dict[PeerId, WorkerRecord] = {}
        if self.path is not None:
            self._load()

    # --- persistence ---------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # A corrupt file costs us history, not the node: start over and say so.
            log.warning("ignoring unreadable reputation file %s: %s", self.path, exc)
            return
        entries = data.get("workers") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            return
        for key, raw in entries.items():
            try:
                peer = PeerId.from_text(key)
            except Exception:
                continue
            if not isinstance(raw, dict):
                continue
            rec = WorkerRecord()
            for name in ("successes", "failures", "spot_check_failures", "spot_checks_passed", "updated_at"):
                setattr(rec, name, _finite(raw.get(name)) or 0.0)
            rec.latency_ms = _finite(raw.get("latency_ms"))
            rec.tokens_per_s = _finite(raw.get("tokens_per_s"))
            self.workers[peer] = rec

    def save(self) -> None:
        if self.path is None:
            return
        payload = {"version": FORMAT_VERSION, "workers": {str(p): asdict(r) for p, r in self.workers.items()}}
        data = json.dumps(payload, sort_keys=True).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    # --- measurements --------------------------------------------------------
    def _record(self, worker: PeerId) -> WorkerRecord:
        now = self.clock.now()
        rec = self.workers.get(worker)
        if rec is None:
            rec = self.workers[worker] = WorkerRecord(updated_at=now)
            return rec
        self._decay(rec, now)
        return rec

    def _decay(self, rec: WorkerRecord, now: float) -> None:
        elapsed = max(0.0, now - rec.updated_at)
        factor = 0.5 ** (elapsed / self.config.half_life_s)
        rec.successes *= factor
        rec.failures *= factor
        rec.spot_check_failures *= factor
        rec.spot_checks_passed *= factor
        rec.updated_at = max(rec.updated_at, now)

    def _ewma(self, old: float | None, new: float | None) -> float | None:
        new = _finite(new)
        if new is None:
            return old
        if old is None:
            return new
        return old + self.config.ewma_alpha * (new - old)

    def record_success(
        self, worker: PeerId, *, latency_ms: float | None = None, tokens_per_s: float | None = None
    ) -> None:
        rec = self._record(worker)
        rec.successes += 1
        rec.latency_ms = self._ewma(rec.latency_ms, latency_ms)
        rec.tokens_per_s = self._ewma(rec.tokens_per_s, tokens_per_s)
        self.save()

    def record_failure(self, worker: PeerId, reason: str = "") -> None:
        self._record(worker).failures += 1
        if reason:
            log.debug("worker %s failed: %s", worker.short, reason)
        self.save()

    def record_spot_check(self, worker: PeerId, *, passed: bool) -> None:
        rec = self._record(worker)
        if passed:
            rec.spot_checks_passed += 1
        else:
            rec.spot_check_failures += 1
        self.save()

    # --- queries -------------------------------------------------------------
    def _current(self, worker: PeerId) -> WorkerRecord | None:
        rec = self.workers.get(worker)
        if rec is None:
            return None
        copy = WorkerRecord(**asdict(rec))
        self._decay(copy, self.clock.now())
        return copy

    def weight(self, worker: PeerId) -> float:
        """Award-time weight in (0, 1]; higher is better."""
        cfg = self.config
        rec = self._current(worker) or WorkerRecord()
        bad = rec.failures + cfg.spot_check_penalty * rec.spot_check_failures
        reliability = (rec.successes + cfg.prior_successes) / (
            rec.successes + bad + cfg.prior_successes + cfg.prior_failures
        )
        speed = 1.0
        if rec.latency_ms is not None and rec.latency_ms > cfg.latency_target_ms:
            speed *= math.sqrt(cfg.latency_target_ms / rec.latency_ms)
        if cfg.tokens_per_s_target > 0 and rec.tokens_per_s is not None and rec.tokens_per_s < cfg.tokens_per_s_target:
            speed *= math.sqrt(max(rec.tokens_per_s, 0.0) / cfg.tokens_per_s_target)
        return min(1.0, max(cfg.min_weight, reliability * speed))

    def snapshot(self, worker: PeerId) -> dict[str, Any] | None:
        """Decayed counters, averages and weight, for display; None for an unknown worker."""
        rec = self._current(worker)
        if rec is None:
            return None
        out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(rec).items() if k != "updated_at"}
        out["weight"] = round(self.weight(worker), 4)
        return out
