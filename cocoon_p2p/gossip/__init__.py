"""gossipsub-like pub/sub: topics, meshes, dedup, scoring (DESIGN.md §6)."""

from .config import GossipConfig, ScoreParams
from .discovery import TOPIC_RECORD, register_topic_records
from .message import GossipMessage, MessageRejected, sign_message, topic_key
from .metrics import GossipMetrics
from .peers import RPC_METHOD
from .score import Scoreboard
from .service import Gossip, Validator

__all__ = [
    "RPC_METHOD",
    "TOPIC_RECORD",
    "Gossip",
    "GossipConfig",
    "GossipMessage",
    "GossipMetrics",
    "MessageRejected",
    "ScoreParams",
    "Scoreboard",
    "Validator",
    "register_topic_records",
    "sign_message",
    "topic_key",
]
