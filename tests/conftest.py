"""Shared fixtures: real hosts on real loopback TCP."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
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


#: A rare lost wake-up has hung two trio tests once each in full-suite runs (never when run alone).
#: Every async test gets a trio deadline so a hang fails cleanly instead of stalling CI, and
#: `make test` re-runs a failed test once (pytest-rerunfailures). Follow-up: find the lost wake-up.
TEST_DEADLINE = 600.0


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fn = getattr(item, "obj", None)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded(*args: object, __fn: Any = fn, **kwargs: object) -> object:
                with trio.fail_after(TEST_DEADLINE):
                    return await __fn(*args, **kwargs)

            item.obj = guarded  # type: ignore[attr-defined]
