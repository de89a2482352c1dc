"""The scenario registry.

A scenario is a module with:

- ``NAME: str`` and ``QUESTION: str`` (the one question it answers);
- ``KNOBS: dict[str, Knob]`` — its own parameters (the network knobs of
  ``harness.NETWORK_KNOBS`` are added to every scenario);
- ``run(params, seeds, progress) -> Tables`` — table name -> rows; the main table
  should be called ``rows``;
- optionally ``summarize(tables) -> dict`` (headline numbers for the manifest and
  sweeps) and ``plot(tables, out_dir) -> list[Path]``.

Modules are imported lazily so a scenario whose layer is still being written does
not break the others. ``PLANNED`` lists scenarios waiting for their layer.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SCENARIOS: dict[str, str] = {
    "netcheck": "simulations.scenarios.netcheck",
    "rpcping": "simulations.scenarios.rpcping",
    "dht": "simulations.scenarios.dht",
}

#: Scenarios waiting on a protocol layer: name -> the question they will answer.
PLANNED: dict[str, str] = {
    "gossip": "How fast and how completely does an RFQ reach subscribed workers (delivery ratio, "
    "latency percentiles, duplicates per peer) under churn and loss?",
    "market": "Given the bid window, how often do clients get a bid, how close is the clearing price "
    "to the best offer, and how does load spread across workers?",
    "payments": "How much value is at risk per channel (credit granted vs paid) when workers or "
    "clients vanish mid-job, and how long do force-closes take?",
    "attacks": "How much do Sybil/eclipse peers, spam RFQs and bid-withholding degrade lookups, delivery and prices?",
}


class UnknownScenario(KeyError):
    pass


def load(name: str) -> ModuleType:
    if name not in SCENARIOS:
        if name in PLANNED:
            raise UnknownScenario(f"scenario {name!r} is planned but not written yet: {PLANNED[name]}")
        raise UnknownScenario(f"unknown scenario {name!r}; available: {', '.join(sorted(SCENARIOS))}")
    return importlib.import_module(SCENARIOS[name])
