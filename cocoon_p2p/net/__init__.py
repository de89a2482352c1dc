"""The network and clock seam (DESIGN.md §2)."""

from .base import ConnectionHandler, Network, join_address, split_address
from .clock import SystemClock, TrioWallClock, WallClock
from .tcp import TcpNetwork

__all__ = [
    "ConnectionHandler",
    "Network",
    "SystemClock",
    "TcpNetwork",
    "TrioWallClock",
    "WallClock",
    "join_address",
    "split_address",
]
