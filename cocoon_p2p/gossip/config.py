"""Gossip parameters (DESIGN.md §6). Defaults follow gossipsub v1.1 where it has one."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass(frozen=True)
class ScoreParams:
    """How a peer's behaviour turns into a score, and what the score gates.

    Invalid messages weigh quadratically (as gossipsub's P4): one bad message from an
    honest peer with a buggy validator costs it its mesh slots, a handful from a
    flooder graylists it. Counters decay with a half-life so a peer can recover.
    """

    first_delivery_weight: float = 0.5  # per message this peer delivered to us first
    first_delivery_cap: float = 20.0
    first_delivery_half_life: float = 60.0
    invalid_weight: float = -10.0  # times the squared count of invalid messages
    invalid_half_life: float = 300.0
    excess_weight: float = -1.0  # per message beyond the peer's rate limit
    excess_half_life: float = 60.0
    behaviour_weight: float = -2.0  # times the squared count of protocol misbehaviour
    behaviour_half_life: float = 120.0
    mesh_threshold: float = 0.0  # below: pruned from our meshes, never grafted
    gossip_threshold: float = -20.0  # below: no IHAVE/IWANT exchanged
    publish_threshold: float = -50.0  # below: not used for our own publications
    graylist_threshold: float = -100.0  # below: everything the peer sends is ignored

    def __post_init__(self) -> None:
        if not self.graylist_threshold < self.publish_threshold <= self.gossip_threshold <= self.mesh_threshold:
            raise ConfigError("score thresholds must satisfy graylist < publish <= gossip <= mesh")


@dataclass(frozen=True)
class GossipConfig:
    d: int = 6
    d_lo: int = 4
    d_hi: int = 12
    d_score: int = 4  # when shrinking an oversized mesh, the best-scored peers kept
    d_lazy: int = 6  # non-mesh peers that get IHAVE gossip per topic per heartbeat
    heartbeat_interval: float = 1.0
    history_length: int = 5  # heartbeats a message stays answerable to IWANT
    history_gossip: int = 3  # heartbeats of message ids advertised in IHAVE
    seen_ttl: float = 120.0
    max_clock_skew: float = 10.0  # how far in the future an origin's timestamp may be
    fanout_ttl: float = 60.0
    prune_backoff: float = 60.0
    prune_peers: int = 16  # other subscribers named in a PRUNE (peer exchange)
    max_known_peers: int = 5000  # peers learned second-hand are not kept beyond this
    flood_publish: bool = True  # our own messages go to every known subscriber, not just the mesh
    max_topic_len: int = 256
    max_ihave_length: int = 5000  # ids per IHAVE we send or accept
    max_ihave_messages: int = 10  # IHAVEs accepted from one peer per heartbeat
    max_iwant_serves: int = 3  # times we answer one peer's IWANT for one message
    msg_rate: float = 500.0  # messages per second accepted from one peer (token bucket)
    msg_burst: int = 1000
    queue_size: int = 256  # pending batches per peer before we drop
    max_batch_bytes: int = 512 << 10
    subscription_buffer: int = 1024  # messages waiting for the application per subscription
    rpc_timeout: float = 5.0
    connect_timeout: float = 5.0
    max_send_failures: int = 2  # consecutive failed sends before a peer is forgotten
    discovery_interval: float = 10.0  # least time between DHT lookups for one topic
    discovery_enough: int = 32  # stop a DHT lookup after this many subscribers
    score: ScoreParams = field(default_factory=ScoreParams)

    def __post_init__(self) -> None:
        if not 0 < self.d_lo <= self.d <= self.d_hi:
            raise ConfigError("mesh degrees must satisfy 0 < d_lo <= d <= d_hi")
        if not 0 <= self.d_score <= self.d:
            raise ConfigError("d_score must be between 0 and d")
        if not 0 < self.history_gossip <= self.history_length:
            raise ConfigError("history_gossip must be between 1 and history_length")
        if self.heartbeat_interval <= 0:
            raise ConfigError("heartbeat_interval must be positive")
        if self.max_message_age <= 0:
            raise ConfigError("seen_ttl must exceed twice max_clock_skew")

    @property
    def max_message_age(self) -> float:
        """Oldest origin timestamp accepted.

        A message is remembered for ``seen_ttl`` after it arrived, and it may have
        arrived up to ``max_clock_skew`` before its own timestamp; keeping the age
        limit below ``seen_ttl - max_clock_skew`` means a copy replayed after we
        forgot it is always too old, so dedup never depends on unbounded memory.
        """
        return self.seen_ttl - 2 * self.max_clock_skew
