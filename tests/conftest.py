"""Shared fixtures: real hosts on real loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from cocoon_p2p.identity import Identity
from cocoon_p2p.net import TcpNetwork
from cocoon_p2p.rpc import Host
from cocoon_p2p.wire.limits import DEFAULT_LIMITS, Limits

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@asynccontextmanager
async def running_hosts(count: int, *, limits: Limits = DEFAULT_LIMITS) -> AsyncIterator[list[Host]]:
    async with trio.open_nursery() as nursery:
        hosts = [Host(Identity.generate(), TcpNetwork(), limits=limits) for _ in range(count)]
        for host in hosts:
            await nursery.start(host.run)
        yield hosts
        nursery.cancel_scope.cancel()


def _raise_fd_limit() -> None:
    """In-process networks hold both ends of every connection; 1024 descriptors run out."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_raise_fd_limit()
