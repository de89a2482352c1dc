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
    "gossip": "simulations.scenarios.gossip",
    "market": "simulations.scenarios.market",
    "attacks": "simulations.scenarios.attacks",
    "payments": "simulations.scenarios.payments",
}

#: Scenarios waiting on a protocol layer: name -> the question they will answer.
PLANNED: dict[str, str] = {}


class UnknownScenario(KeyError):
    pass


def load(name: str) -> ModuleType:
    if name not in SCENARIOS:
        if name in PLANNED:
            raise UnknownScenario(f"scenario {name!r} is planned but not written yet: {PLANNED[name]}")
        raise UnknownScenario(f"unknown scenario {name!r}; available: {', '.join(sorted(SCENARIOS))}")
    return importlib.import_module(SCENARIOS[name])
