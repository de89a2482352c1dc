"""Keeping a peer's DHT state fresh: bucket refresh and republishing (DESIGN.md §5).

Each runs as a background task of ``Dht.run`` and uses only the service's public face
(its table, config, lookups and publishing).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import trio

from ..errors import CocoonError
from ..identity import PeerId
from .distance import bucket_index

if TYPE_CHECKING:
    from .service import Dht

log = logging.getLogger(__name__)


async def refresh_stale_buckets(dht: Dht) -> None:
    """One lookup into each bucket that no lookup or contact touched for ``refresh_interval``."""
    started = trio.current_time()
    idle = dht.config.refresh_interval
    table = dht.table
    stale = table.stale_buckets(started, idle)
    # A lookup of our own id finds every peer nearer to us than our k-th closest contact,
    # so it refreshes at once each bucket that lies wholly inside that distance; a
    # random-id lookup apiece for those (as for the others) would ask the same peers.
    own = dht.host.peer_id
    nearest = table.closest(own.raw)
    horizon = bucket_index(own.raw, nearest[-1].peer_id.raw) if len(nearest) == dht.config.k else -1
    inside = [index for index in stale if index < horizon]
    if inside:
        await dht.lookup_nodes(own.raw)
        for index in inside:
            table.buckets[index].last_changed = trio.current_time()
    # Farthest first: a lookup into a sparse bucket also covers the buckets below it, and
    # any bucket that a lookup or a contact touched since we began needs no lookup of its own.
    for index in sorted((i for i in stale if i >= horizon), reverse=True):
        bucket = table.buckets.peek(index)
        if bucket is not None and started - bucket.last_changed < idle:
            continue
        await dht.lookup_nodes(random_id_in_bucket(own, index, dht.rng))
        table.buckets[index].last_changed = trio.current_time()


def random_id_in_bucket(own: PeerId, index: int, rng: random.Random) -> bytes:
    """A uniformly random id at XOR distance [2^index, 2^(index+1)) from ``own``."""
    offset = (1 << index) | rng.getrandbits(index) if index else 1
    return (own.as_int ^ offset).to_bytes(32, "big")


async def refresh_loop(dht: Dht) -> None:
    interval = dht.config.refresh_interval
    # A random phase, so peers that started together (a devnet, a restarted cluster, a
    # simulated swarm) do not all refresh in the same instant.
    await trio.sleep(dht.rng.uniform(0, interval / 2))
    while True:
        await dht.refresh_stale_buckets()
        dht.store.expire(dht.clock.now())
        await trio.sleep(interval / 2)


async def republish_loop(dht: Dht) -> None:
    """Re-sign and store our own records before they expire."""
    margin = dht.config.republish_margin
    while True:
        await trio.sleep(min(margin / 2, 600.0))
        now = dht.clock.now()
        for (type_, key), record in list(dht.published.items()):
            if record.expires - now < margin:
                log.debug("republishing %s record under %s", type_, key.hex()[:12])
                try:
                    await dht.publish(type_, key, record.value)
                except CocoonError as exc:
                    # e.g. an offer whose own expiry passed: stop republishing it, keep the node up.
                    log.info("dropping %s record under %s: %s", type_, key.hex()[:12], exc)
                    dht.published.pop((type_, key), None)
