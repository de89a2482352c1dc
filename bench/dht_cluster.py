"""Worker processes for bench_dht: each runs a slice of one side's peers and obeys the driver.

A worker owns ``count`` peers in its own event loop (trio for ours, asyncio for kademlia) and
answers commands from the driver over a multiprocessing pipe, one at a time:

- ``("bootstrap", local, entries)`` joins peer ``local`` through ``entries`` (id, address);
- ``("meet", [(local, entries), ...])`` has each listed peer ping every (id, address) in its
  ``entries``, WARM_PARALLEL at a time, so that every pair of peers has talked once;
- ``("warm", targets, per_peer, seed)`` has every peer here look up ``per_peer`` random
  ``targets``, WARM_PARALLEL at a time, untimed;
- ``("lookup", local, target)`` times one lookup from peer ``local`` inside this process
  (so pipe latency is never part of a figure) and returns (seconds, queries, closest ids,
  new connections: Noise handshakes this process saw during the lookup, 0 for kademlia);
- ``("cpu",)`` returns the CPU seconds this process has used (all its threads), so the
  driver can put each side's CPU per lookup beside its latency;
- ``("stop",)`` ends the worker.

Right after start a worker sends the (id, address) of each of its peers. The pipe is read in a
thread so the loop keeps serving remote peers' queries while the worker waits for commands.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import resource
import time
from multiprocessing.connection import Connection
from typing import Any

K, ALPHA = 20, 3
WARM_PARALLEL = 16


def _freeze_heap(peers: int) -> None:
    """After the warm-up, move everything alive into the GC's permanent generation, and make
    the older generations' collections ``peers`` times rarer (both sides alike).

    A worker holds 50 peers' worth of pooled connections (~10,000 in ours, where a deployed
    node holds at most 512): a full collection over that heap took hundreds of ms and put
    one-second outliers into our p99 that no single node would see. The same goes for the
    objects a connection renews with every message it reads (the parked reader's frames):
    with 50 peers' connections in one process a generation-1 collection took 20-30 ms, 50
    times what it costs a node in its own process, so it runs 50 times less often here.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1 * peers, gen2)


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # both ends of local links live here


# --- ours: trio, TCP, Noise ----------------------------------------------------------------
async def _ours_main(pipe: Connection, count: int, seed: int) -> None:
    import trio

    from cocoon_p2p.dht import Contact, Dht, DhtConfig
    from cocoon_p2p.identity import Identity, PeerId
    from cocoon_p2p.net import SystemClock, TcpNetwork
    from cocoon_p2p.rpc import Host

    dhts: list[Dht] = []
    opened = 0

    def tally(_conn: Any) -> None:
        nonlocal opened
        opened += 1

    async with trio.open_nursery() as nursery:
        for i in range(count):
            host = Host(Identity.generate(), TcpNetwork())
            dht = Dht(host, SystemClock(), config=DhtConfig(k=K, alpha=ALPHA), rng=random.Random(seed + i))
            await nursery.start(host.run)
            await nursery.start(dht.run)
            host.on_connection.append(tally)
            dhts.append(dht)
        pipe.send([(d.host.peer_id.raw, d.host.listen_address) for d in dhts])
        while True:
            cmd = await trio.to_thread.run_sync(pipe.recv)
            if cmd[0] == "stop":
                break
            if cmd[0] == "cpu":
                pipe.send(time.process_time())
                continue
            if cmd[0] == "warm":
                await _ours_warm(dhts, *cmd[1:])
                _freeze_heap(count)
                pipe.send(None)
                continue
            if cmd[0] == "meet":
                pipe.send(await _ours_meet(dhts, cmd[1]))
                continue
            dht = dhts[cmd[1]]
            if cmd[0] == "bootstrap":
                pipe.send(await dht.bootstrap([(PeerId(raw), addr) for raw, addr in cmd[2]]))
            elif cmd[0] == "lookup":
                before = opened
                started = time.perf_counter()
                result = await dht.lookup_nodes(cmd[2])
                elapsed = time.perf_counter() - started
                closest: list[Contact] = result.closest
                pipe.send((elapsed, result.queries, [c.peer_id.raw for c in closest], opened - before))
        nursery.cancel_scope.cancel()


async def _ours_meet(dhts: list[Any], plan: list[tuple[int, list[tuple[bytes, str]]]]) -> int:
    import trio

    from cocoon_p2p.dht import Contact
    from cocoon_p2p.identity import PeerId

    limiter = trio.CapacityLimiter(WARM_PARALLEL)
    answered = 0

    async def one(dht: Any, raw: bytes, addr: str) -> None:
        nonlocal answered
        contact = Contact(PeerId(raw), addr)
        async with limiter:
            # Two tries: on this shared 2-core machine a handshake queued behind others can
            # overrun the 3 s query timeout. Both ends then know each other, as with kademlia.
            for _ in range(2):
                if await dht.ping(contact):
                    dht.table.add(contact, trio.current_time())
                    answered += 1
                    break

    async with trio.open_nursery() as nursery:
        for local, entries in plan:
            for raw, addr in entries:
                nursery.start_soon(one, dhts[local], raw, addr)
    return answered


async def _ours_warm(dhts: list[Any], targets: list[bytes], per_peer: int, seed: int) -> None:
    import trio

    rng = random.Random(seed)
    limiter = trio.CapacityLimiter(WARM_PARALLEL)

    async def one(dht: Any, target: bytes) -> None:
        async with limiter:
            await dht.lookup_nodes(target)

    async with trio.open_nursery() as nursery:
        for _ in range(per_peer):
            for dht in dhts:
                nursery.start_soon(one, dht, rng.choice(targets))


def serve_ours(pipe: Connection, count: int, seed: int) -> None:
    """Process entry point: ``count`` cocoon-p2p peers."""
    import trio

    _raise_fd_limit()
    trio.run(_ours_main, pipe, count, seed)


# --- theirs: asyncio, UDP (bmuller/kademlia) -----------------------------------------------
async def _theirs_main(pipe: Connection, ports: list[int]) -> None:
    from kademlia.crawling import NodeSpiderCrawl
    from kademlia.network import Server
    from kademlia.node import Node

    servers: list[Any] = []
    calls = 0
    for port in ports:
        server = Server(ksize=K, alpha=ALPHA)
        await server.listen(port, interface="127.0.0.1")
        original = server.protocol.call_find_node

        async def counted(*args: Any, _original: Any = original) -> Any:
            nonlocal calls
            calls += 1
            return await _original(*args)

        server.protocol.call_find_node = counted
        servers.append(server)
    pipe.send([(s.node.id, ("127.0.0.1", port)) for s, port in zip(servers, ports, strict=True)])
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, pipe.recv)
        if cmd[0] == "stop":
            break
        if cmd[0] == "cpu":
            pipe.send(time.process_time())
            continue
        if cmd[0] == "warm":
            await _theirs_warm(servers, *cmd[1:])
            _freeze_heap(len(servers))
            pipe.send(None)
            continue
        if cmd[0] == "meet":
            pipe.send(await _theirs_meet(servers, cmd[1]))
            continue
        server = servers[cmd[1]]
        if cmd[0] == "bootstrap":
            found = await server.bootstrap([addr for _, addr in cmd[2]])
            pipe.send(len(found))
        elif cmd[0] == "lookup":
            node = Node(cmd[2])
            before = calls
            started = time.perf_counter()
            nearest = server.protocol.router.find_neighbors(node, ALPHA)
            found = await NodeSpiderCrawl(server.protocol, node, nearest, K, ALPHA).find()
            elapsed = time.perf_counter() - started
            pipe.send((elapsed, calls - before, [n.id for n in found], 0))
    for server in servers:
        server.stop()


async def _theirs_meet(servers: list[Any], plan: list[tuple[int, list[tuple[bytes, Any]]]]) -> int:
    from kademlia.node import Node

    limiter = asyncio.Semaphore(WARM_PARALLEL)

    async def one(server: Any, raw: bytes, addr: tuple[str, int]) -> bool:
        async with limiter:
            answer = await server.protocol.call_ping(Node(raw, *addr))
            return bool(answer[0])

    pings = (one(servers[local], raw, addr) for local, entries in plan for raw, addr in entries)
    results = await asyncio.gather(*pings)
    return sum(results)


async def _theirs_warm(servers: list[Any], targets: list[bytes], per_peer: int, seed: int) -> None:
    from kademlia.crawling import NodeSpiderCrawl
    from kademlia.node import Node

    rng = random.Random(seed)
    limiter = asyncio.Semaphore(WARM_PARALLEL)

    async def one(server: Any, target: bytes) -> None:
        async with limiter:
            node = Node(target)
            nearest = server.protocol.router.find_neighbors(node, ALPHA)
            await NodeSpiderCrawl(server.protocol, node, nearest, K, ALPHA).find()

    await asyncio.gather(*(one(s, rng.choice(targets)) for _ in range(per_peer) for s in servers))


def serve_theirs(pipe: Connection, ports: list[int]) -> None:
    """Process entry point: one `kademlia` server per port."""
    logging.getLogger("kademlia").setLevel(logging.ERROR)
    _raise_fd_limit()
    asyncio.run(_theirs_main(pipe, ports))
