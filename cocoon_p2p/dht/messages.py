"""The DHT's message formats (docs/PROTOCOL.md §6): request schemas, and contacts as they
travel in replies."""

from __future__ import annotations

from typing import Any

from ..identity import PeerId
from ..wire.codec import BYTES32, Field, Schema
from .routing import Contact

HEADER = {"port": Field(int, min_value=0, max_value=65535, optional=True)}
FIND = Schema("find", target=BYTES32, **HEADER)
STORE = Schema("store", record=Field(dict), **HEADER)
CONTACT = Schema("contact", id=BYTES32, addr=Field(str, max_len=64))
REPLY = Schema("find_reply", nodes=Field(list, max_len=64), records=Field(list, max_len=256, optional=True))

#: PeerIds already built, by raw id, shared by every Dht of the process (a simulated swarm
#: runs thousands: a memo each held millions of duplicate PeerIds). About 4 MB when full.
_PEER_ID_MEMO = 16384
_peer_ids: dict[bytes, PeerId] = {}


def encode_contacts(contacts: list[Contact]) -> list[dict[str, Any]]:
    return [{"id": c.peer_id.raw, "addr": c.address} for c in contacts]


class ContactDecoder:
    """Reads the contacts of a find reply, reusing PeerIds built before (``_peer_ids``).

    Replies name the same peers over and over; building a PeerId (validation and its
    integer) for each was a sixth of a lookup's CPU.
    """

    def decode(self, reply: dict[str, Any]) -> list[Contact]:
        contacts = []
        peer_ids = _peer_ids
        for item in REPLY.validate(reply)["nodes"]:
            # Every lookup parses k contacts per reply: the plain well-formed case is checked
            # inline (same rules as CONTACT), anything else goes through the schema for its error.
            raw = item.get("id") if type(item) is dict else None
            addr = item.get("addr") if type(item) is dict else None
            if not (type(raw) is bytes and len(raw) == 32 and type(addr) is str and len(addr) <= 64):
                node = CONTACT.validate(item)
                raw, addr = node["id"], node["addr"]
            peer_id = peer_ids.get(raw)
            if peer_id is None:
                if len(peer_ids) >= _PEER_ID_MEMO:
                    peer_ids.clear()  # a bound, not an LRU: a forgotten id is just rebuilt
                peer_id = peer_ids[raw] = PeerId(raw)
            contacts.append(Contact(peer_id, addr))
        return contacts
