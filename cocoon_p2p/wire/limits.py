"""Wire limits (DESIGN.md §3). Defaults are the brief's; every one is configurable."""

from __future__ import annotations

from dataclasses import dataclass

NOISE_MAX_MESSAGE = 65535
NOISE_TAG = 16
MAX_FRAME_PLAINTEXT = NOISE_MAX_MESSAGE - NOISE_TAG  # 65519


@dataclass(frozen=True)
class Limits:
    max_message: int = 1 << 20  # one application message, after reassembly
    max_record: int = 4096  # a DHT record value
    max_gossip: int = 64 << 10
    max_streams: int = 256  # concurrent calls + streams per connection
    max_connections: int = 512
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    #: For connections that carried only brief calls (Router.unary(brief=True): the DHT's
    #: one-shot queries), which come in bursts (a lookup, then stores on the peers it found)
    #: and are seldom reused later; each open end holds ~10 KB. In a churning 1,000-peer
    #: simulation, of 14,200 pooled reuses 11,700 came within 5 s of the connection's last
    #: use and 2,100 after more than 20 s, against 107,000 new dials.
    brief_idle_timeout: float = 20.0
    requests_per_second: float = 1000.0  # per connection, token bucket
    request_burst: int = 2000
    stream_window: int = 64  # items in flight per stream before the sender waits
    max_string: int = 1 << 20
    max_items: int = 100_000


DEFAULT_LIMITS = Limits()
