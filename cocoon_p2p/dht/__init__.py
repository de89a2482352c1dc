"""Kademlia DHT with signed records (DESIGN.md §5)."""

from .distance import bucket_index, common_prefix_length, distance, model_key
from .lookup import LookupResult, iterative_lookup
from .records import PEER_RECORD, PROVIDER_RECORD, Record, RecordRejected, RecordValidator, sign_record
from .routing import Contact, RoutingTable
from .service import Dht, DhtConfig
from .store import RecordStore

__all__ = [
    "PEER_RECORD",
    "PROVIDER_RECORD",
    "Contact",
    "Dht",
    "DhtConfig",
    "LookupResult",
    "Record",
    "RecordRejected",
    "RecordStore",
    "RecordValidator",
    "RoutingTable",
    "bucket_index",
    "common_prefix_length",
    "distance",
    "iterative_lookup",
    "model_key",
    "sign_record",
]
