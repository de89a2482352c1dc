"""In-process networks of full peers (real TCP, Noise, llama.cpp) for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cocoon_p2p.identity import Identity
from cocoon_p2p.node.config import ClientConfig, NodeConfig, PaymentsConfig, WorkerConfig
from cocoon_p2p.node.peer import Peer


@dataclass
class PeerSpec:
    name: str
    roles: list[str]
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    chain: str | None = None
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)


@dataclass
class RunningPeer:
    peer: Peer
    scope: trio.CancelScope

    def kill(self) -> None:
        self.scope.cancel()


async def _run(peer: Peer, *, task_status: trio.TaskStatus[RunningPeer]) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            task_status.started(RunningPeer(peer, scope))


@asynccontextmanager
async def peer_network(root: Path, specs: list[PeerSpec]) -> AsyncIterator[dict[str, RunningPeer]]:
    """Start ``specs`` in order; the first is everyone's bootstrap peer."""
    running: dict[str, RunningPeer] = {}
    bootstrap_file = root / "bootstrap.txt"
    async with trio.open_nursery() as nursery:
        for spec in specs:
            config = NodeConfig(
                data_dir=root / spec.name,
                listen="127.0.0.1:0",
                roles=spec.roles,
                admin_listen="",
                bootstrap=bootstrap_file if running else None,
                worker=spec.worker,
                client=spec.client,
                chain=spec.chain,
                payments=spec.payments,
            )
            config.data_dir.mkdir(parents=True, exist_ok=True)
            peer = Peer(config, Identity.generate())
            running[spec.name] = await nursery.start(_run, peer)
            if len(running) == 1:
                bootstrap_file.write_text(f"{peer.peer_id} {peer.host.listen_address}\n")
            await peer.joined.wait()
        yield running
        nursery.cancel_scope.cancel()
