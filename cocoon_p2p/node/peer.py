"""A peer process: host + DHT (+ market, inference, payments by role), one nursery."""

from __future__ import annotations

import logging
import random
from typing import Any

import trio

from ..dht import Dht, DhtConfig
from ..errors import ConfigError
from ..identity import Identity, PeerId
from ..market import DirectRfqTransport, GossipRfqTransport, RfqTransport, install_offer_validator
from ..net import Network, SystemClock, TcpNetwork, WallClock, split_address
from ..rpc import Host
from ..session.payment_seam import LedgerPayments, PaymentsFactory
from .bootstrap import BootstrapEntry, dedupe, join_with_backoff, load_bootstrap_file, load_peer_cache, save_peer_cache
from .config import NodeConfig
from .roles import ClientRole, WorkerRole

log = logging.getLogger(__name__)


class Peer:
    def __init__(
        self,
        config: NodeConfig,
        identity: Identity,
        *,
        network: Network | None = None,
        clock: WallClock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.host = Host(identity, network or TcpNetwork(), listen=config.listen)
        self.dht = Dht(
            self.host,
            self.clock,
            config=DhtConfig(per_subnet=2),
            rng=self.rng,
            advertise=config.advertise,
        )
        self.started_at = 0.0
        self.joined = trio.Event()
        self.admin_address: str | None = None
        self.gateway_address: str | None = None
        # Every peer stores DHT records, so every peer refuses bad offers, whatever its role.
        install_offer_validator(self.dht)
        self.payments = self._payments()
        transport = self._rfq_transport()
        self.worker: WorkerRole | None = None
        self.client: ClientRole | None = None
        if "worker" in config.roles:
            self.worker = WorkerRole(self, transport, self.payments)
        if "client" in config.roles:
            self.client = ClientRole(self, transport, self.payments)

    def _payments(self) -> PaymentsFactory:
        if self.config.chain is None:
            return LedgerPayments()
        from ..payments.session import ChannelPayments

        return ChannelPayments(self)

    def _rfq_transport(self) -> RfqTransport:
        if self.config.rfq_transport == "gossip":
            from ..gossip import Gossip

            self.gossip = Gossip(self.host, self.dht, self.clock, self.rng)
            return GossipRfqTransport(self.gossip)
        if self.config.rfq_transport != "direct":
            raise ConfigError("rfq_transport is 'direct' or 'gossip'")
        return DirectRfqTransport(self.host, self.dht)

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    def bootstrap_entries(self) -> list[BootstrapEntry]:
        entries: list[BootstrapEntry] = []
        if self.config.bootstrap is not None:
            entries += load_bootstrap_file(self.config.bootstrap)
        entries += load_peer_cache(self.config.data_dir)
        own = {self.host.listen_address, self.config.advertise}
        return [e for e in dedupe(entries) if e[0] != self.peer_id and e[1] not in own]

    async def run(self, *, task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED) -> None:
        from .admin import serve_admin  # keeps hypercorn off the import path of embedded peers

        self.started_at = self.clock.now()
        async with trio.open_nursery() as nursery:
            address = await nursery.start(self.host.run)
            if self.config.advertise is None and split_address(address)[0] in ("0.0.0.0", "::"):
                raise ConfigError("listening on a wildcard address: set --advertise host:port so peers can reach you")
            await nursery.start(self.dht.run)
            if hasattr(self.payments, "run"):  # payment channels: watchers, idle closes, wallet funding
                await nursery.start(self.payments.run)
            log.info("peer %s listening on %s (roles: %s)", self.peer_id, address, ",".join(self.config.roles))
            if self.config.admin_listen:
                self.admin_address = await nursery.start(
                    serve_admin,
                    self.config.data_dir,
                    self.config.admin_listen,
                    self.admin_commands(),
                    self.metrics_text,
                )
            if getattr(self, "gossip", None) is not None:
                await nursery.start(self.gossip.run)
            nursery.start_soon(self._join)
            if self.worker is not None:
                await nursery.start(self.worker.run)
            if self.client is not None and self.config.gateway_listen:
                await nursery.start(self._serve_gateway)
            task_status.started(self)

    async def prepare_stop(self) -> None:
        """Before the nursery is cancelled: close idle payment channels while the network is still up."""
        if hasattr(self.payments, "shutdown"):
            await self.payments.shutdown()

    async def _serve_gateway(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from ..gateway import serve_gateway

        assert self.client is not None and self.config.gateway_listen
        host, port = split_address(self.config.gateway_listen)
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_gateway, self.client.client, host, port)
            self.gateway_address = f"{host}:{bound}"
            (self.config.data_dir / "gateway.addr").write_text(self.gateway_address)
            log.info("OpenAI-compatible gateway on http://%s/v1", self.gateway_address)
            task_status.started()

    async def _join(self) -> None:
        entries = self.bootstrap_entries()
        if not entries:
            log.info("no bootstrap peers configured: this peer starts a new network")
            self.joined.set()
            return
        known = await join_with_backoff(self.dht.bootstrap, entries)
        if known:
            log.info("joined the network: %d peers in the routing table", known)
            await self.dht.publish_self()
            self._save_cache()
        else:
            log.error("could not reach any bootstrap peer; check the bootstrap list and the network")
        self.joined.set()

    def _save_cache(self) -> None:
        contacts = self.dht.table.all_contacts()
        save_peer_cache(self.config.data_dir, [(c.peer_id, c.address) for c in contacts])

    # --- admin -------------------------------------------------------------
    def admin_commands(self) -> dict[str, Any]:
        async def status(_: dict[str, str]) -> dict[str, Any]:
            body = self.status()
            if hasattr(self.payments, "status"):  # wallet balance, locked and paid amounts
                body["payments"] = await self.payments.status()
            return body

        async def peers(_: dict[str, str]) -> dict[str, Any]:
            return {"peers": [{"id": str(c.peer_id), "address": c.address} for c in self.dht.table.all_contacts()]}

        async def dht_find(args: dict[str, str]) -> dict[str, Any]:
            target = PeerId.from_text(args.get("peer", ""))
            return {"peer": str(target), "addresses": await self.dht.find_peer(target)}

        async def dht_get(args: dict[str, str]) -> dict[str, Any]:
            try:
                key = bytes.fromhex(args.get("key", ""))
            except ValueError:
                raise ConfigError("key must be 64 hex digits") from None
            if len(key) != 32:
                raise ConfigError("key must be 64 hex digits")
            result = await self.dht.get_records(key)
            return {
                "key": key.hex(),
                "hops": result.hops,
                "records": [
                    {
                        "type": r.type,
                        "publisher": str(r.publisher_id),
                        "seq": r.seq,
                        "expires": r.expires,
                        "size": len(r.value),
                    }
                    for r in result.records
                ],
            }

        commands = {"status": status, "peers": peers, "dht/find": dht_find, "dht/get": dht_get}
        if hasattr(self.payments, "admin_commands"):
            commands.update(self.payments.admin_commands())  # channels, channels/close, channels/force_close
        if self.client is not None:
            commands["offers"] = self.client.offers
        else:
            from ..market import offers_admin_command

            async def offers(args: dict[str, str]) -> dict[str, Any]:
                return await offers_admin_command(self.dht, None, args)

            commands["offers"] = offers
        return commands

    def status(self) -> dict[str, Any]:
        return {
            "peer_id": str(self.peer_id),
            "listen": self.host.listen_address,
            "roles": self.config.roles,
            "uptime_s": round(self.clock.now() - self.started_at, 1),
            "routing_table": len(self.dht.table),
            "connections": len(self.host.connections),
            "records_stored": len(self.dht.store),
            "payments": "ton-channels" if self.config.chain else "ledger (unpaid: no chain configured)",
            **({"worker": self.worker.status()} if self.worker else {}),
            **({"client": self.client.status()} if self.client else {}),
        }

    def metrics_text(self) -> str:
        lines = [
            f"cocoon_routing_table_peers {len(self.dht.table)}",
            f"cocoon_connections {len(self.host.connections)}",
            f"cocoon_dht_records {len(self.dht.store)}",
            f"cocoon_dht_rpcs_sent_total {self.dht.rpcs_sent}",
            f"cocoon_handshake_failures_total {self.host.handshake_failures}",
        ]
        if hasattr(self.payments, "metrics_lines"):
            lines += self.payments.metrics_lines()
        return "\n".join(lines) + "\n"
