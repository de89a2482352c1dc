"""Builds the peer a config asks for (roles decide which services join the nursery)."""

from __future__ import annotations

from ..identity import Identity
from .config import NodeConfig
from .peer import Peer


def build_peer(config: NodeConfig, identity: Identity) -> Peer:
    return Peer(config, identity)
