"""The research simulator: production protocol code on a virtual network and clock.

See simulations/README.md. The pieces a scenario uses:

- ``SimNetwork`` / ``SimEndpoint`` (network.py): the in-memory ``Network`` seam;
- latency models (latency.py) and churn models (churn.py);
- ``Seeds``, ``simulate``, ``World`` (harness.py): determinism and virtual time;
- results.py / runner.py / sweep.py / cli.py: the results folder and the CLI.
"""

from .churn import ChurnModel, Exponential, Pareto, Weibull
from .harness import Seeds, World, simulate
from .latency import ConstantLatency, CoordinateLatency, RegionLatency
from .network import SimEndpoint, SimNetwork

__all__ = [
    "ChurnModel",
    "ConstantLatency",
    "CoordinateLatency",
    "Exponential",
    "Pareto",
    "RegionLatency",
    "Seeds",
    "SimEndpoint",
    "SimNetwork",
    "Weibull",
    "World",
    "simulate",
]
