"""How RFQs travel: gossip on ``rfq/<model-id>``, or direct RPC fan-out to offering workers.

The auction code sees only :class:`RfqTransport`. :class:`GossipRfqTransport` is the
normal path (DESIGN.md §6-§7). :class:`DirectRfqTransport` sends the RFQ straight to
every worker with an offer in the DHT; it needs no gossip mesh, which suits small
networks and tests, at the cost of one DHT lookup and one call per worker per RFQ.

A subscriber passes a *stateless* check (shape, signature, expiry, topic, origin).
Replay checks stay with the worker: a gossip validator that remembered job ids
would punish an honest relay that forwarded the second copy of a replay first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import trio

from ..dht import Dht
from ..errors import CocoonError, RemoteError
from ..identity import PeerId
from ..rpc import CallContext, Host
from .offer import find_offers

log = logging.getLogger(__name__)

RFQ_METHOD = "market.rfq"


def rfq_topic(model_id: str) -> str:
    return f"rfq/{model_id}"


class RfqDelivery(Protocol):
    """An RFQ as received: its bytes and the authenticated peer it came from (when known).

    ``gossip.GossipMessage`` satisfies this (origin = the signed gossip origin).
    """

    @property
    def data(self) -> bytes: ...

    @property
    def origin(self) -> PeerId | None: ...


#: A stateless check of one delivery: (data, origin) -> acceptable?
RfqCheck = Callable[[bytes, "PeerId | None"], bool]


class RfqTransport(Protocol):
    async def publish_rfq(self, model_id: str, data: bytes) -> None:
        """Send ``data`` (a signed RFQ) towards every worker serving ``model_id``."""
        ...

    def subscribe_rfqs(self, model_id: str, check: RfqCheck) -> trio.MemoryReceiveChannel[Any]:
        """Deliveries (``RfqDelivery``) for ``model_id`` that passed ``check``."""
        ...


class _Delivery:
    __slots__ = ("data", "origin")

    def __init__(self, data: bytes, origin: PeerId | None) -> None:
        self.data = data
        self.origin = origin


class DirectRfqTransport:
    """RFQs by RPC (``market.rfq``) to each worker that has an offer in the DHT."""

    def __init__(self, host: Host, dht: Dht, *, call_timeout: float = 2.0, buffer: int = 256) -> None:
        self.host = host
        self.dht = dht
        self.call_timeout = call_timeout
        self.buffer = buffer
        self._subs: dict[str, tuple[RfqCheck, trio.MemorySendChannel[Any]]] = {}
        self._registered = False
        self.sent = 0
        self.refused = 0

    def subscribe_rfqs(self, model_id: str, check: RfqCheck) -> trio.MemoryReceiveChannel[Any]:
        if not self._registered:
            self.host.router.unary(RFQ_METHOD, self._on_rfq)
            self._registered = True
        send, receive = trio.open_memory_channel[Any](self.buffer)
        self._subs[model_id] = (check, send)
        return receive

    async def _on_rfq(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        model, data = params.get("model"), params.get("rfq")
        if not isinstance(model, str) or not isinstance(data, bytes):
            raise RemoteError("malformed", "market.rfq takes {model: str, rfq: bytes}")
        sub = self._subs.get(model)
        if sub is None:
            raise RemoteError("wrong_model", f"not serving {model!r}")
        check, send = sub
        if not check(data, ctx.peer_id):
            self.refused += 1
            raise RemoteError("rejected", "rfq failed validation")
        try:
            send.send_nowait(_Delivery(data, ctx.peer_id))
        except trio.WouldBlock:
            raise RemoteError("busy", "too many rfqs queued") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise RemoteError("wrong_model", f"no longer serving {model!r}") from None
        return {}

    async def publish_rfq(self, model_id: str, data: bytes) -> None:
        offers = await find_offers(self.dht, model_id)

        async def send_to(peer_id: PeerId, address: str) -> None:
            try:
                with trio.fail_after(self.call_timeout):
                    conn = await self.host.connect(address, expected=peer_id)
                    await conn.call(RFQ_METHOD, {"model": model_id, "rfq": data})
                self.sent += 1
            except (CocoonError, trio.TooSlowError, OSError) as exc:
                log.debug("rfq to %s failed: %s", peer_id.short, exc)

        async with trio.open_nursery() as nursery:
            for offer in offers:
                if offer.worker_id != self.host.peer_id:
                    nursery.start_soon(send_to, offer.worker_id, offer.addrs[0])


class GossipRfqTransport:
    """RFQs over gossip topics; ``gossip`` is a ``cocoon_p2p.gossip`` instance (duck-typed)."""

    def __init__(self, gossip: Any) -> None:
        self.gossip = gossip

    def subscribe_rfqs(self, model_id: str, check: RfqCheck) -> trio.MemoryReceiveChannel[Any]:
        topic = rfq_topic(model_id)
        self.gossip.add_validator(topic, lambda msg: check(msg.data, msg.origin))
        return self.gossip.subscribe(topic)

    async def publish_rfq(self, model_id: str, data: bytes) -> None:
        await self.gossip.publish(rfq_topic(model_id), data)
