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
    #: one-shot queries), which are seldom reused after a minute and would otherwise hold
    #: ~10 KB per end for five (in a churning 1,000-peer simulation about 2 % of
    #: dials found a pooled connection idle between 60 and 300 s).
    brief_idle_timeout: float = 60.0
    requests_per_second: float = 1000.0  # per connection, token bucket
    request_burst: int = 2000
    stream_window: int = 64  # items in flight per stream before the sender waits
    max_string: int = 1 << 20
    max_items: int = 100_000


DEFAULT_LIMITS = Limits()
