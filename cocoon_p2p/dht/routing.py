"""The Kademlia routing table: 256 buckets of at most k contacts.

Least-recently-seen eviction with ping-before-evict: a newcomer to a full bucket
waits in that bucket's replacement cache while the oldest contact is pinged; only
if the ping fails does the newcomer take its place. At most ``per_subnet`` contacts
of one IPv4 /24 share a bucket, which makes eclipsing a bucket cost many networks.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

from ..identity import PeerId
from ..net import split_address
from .distance import ID_BITS, bucket_index


@dataclass
class Contact:
    peer_id: PeerId
    address: str
    last_seen: float = 0.0
    failures: int = 0

    @property
    def subnet(self) -> str | None:
        """The /24 of an IPv4 address, or None where the limit does not apply (loopback, IPv6, names)."""
        try:
            host, _ = split_address(self.address)
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        if ip.version != 4 or ip.is_loopback:
            return None
        return str(ipaddress.ip_network(f"{ip}/24", strict=False))


@dataclass
class Bucket:
    contacts: OrderedDict[PeerId, Contact] = field(default_factory=OrderedDict)  # oldest first
    replacements: OrderedDict[PeerId, Contact] = field(default_factory=OrderedDict)
    last_changed: float = 0.0


class RoutingTable:
    def __init__(
        self, own_id: PeerId, *, k: int = 20, per_subnet: int | None = 2, replacement_size: int | None = None
    ) -> None:
        self.own_id = own_id
        self.k = k
        self.per_subnet = per_subnet
        self.replacement_size = replacement_size or k
        self.buckets = [Bucket() for _ in range(ID_BITS)]
        # Indices of non-empty buckets, rebuilt after membership changes: a table of n peers
        # fills only about log2(n) buckets, and closest() should not walk the other ~250.
        self._filled: list[int] | None = None

    def __len__(self) -> int:
        return sum(len(b.contacts) for b in self.buckets)

    def __contains__(self, peer_id: PeerId) -> bool:
        if peer_id == self.own_id:
            return False
        return peer_id in self.buckets[bucket_index(self.own_id.raw, peer_id.raw)].contacts

    def bucket_of(self, peer_id: PeerId) -> Bucket:
        return self.buckets[bucket_index(self.own_id.raw, peer_id.raw)]

    def get(self, peer_id: PeerId) -> Contact | None:
        if peer_id == self.own_id:
            return None
        return self.bucket_of(peer_id).contacts.get(peer_id)

    def add(self, contact: Contact, now: float) -> Contact | None:
        """Record that ``contact`` is alive.

        Returns the bucket's least-recently-seen contact when the bucket is full and
        the newcomer was parked in the replacement cache: the caller should ping it
        and call :meth:`remove` if it does not answer (or :meth:`add` it if it does).
        """
        if contact.peer_id == self.own_id:
            return None
        bucket = self.bucket_of(contact.peer_id)
        contact.last_seen = now
        existing = bucket.contacts.get(contact.peer_id)
        if existing is not None:
            existing.last_seen = now
            existing.failures = 0
            if existing.address != contact.address:
                # A moved peer must not push its new /24 over the bucket's limit.
                del bucket.contacts[contact.peer_id]
                if self._subnet_allows(bucket, contact):
                    existing.address = contact.address
                bucket.contacts[contact.peer_id] = existing
            bucket.contacts.move_to_end(contact.peer_id)
            bucket.last_changed = now
            return None
        if not self._subnet_allows(bucket, contact):
            return None
        if len(bucket.contacts) < self.k:
            bucket.contacts[contact.peer_id] = contact
            self._filled = None
            bucket.replacements.pop(contact.peer_id, None)
            bucket.last_changed = now
            return None
        bucket.replacements.pop(contact.peer_id, None)
        bucket.replacements[contact.peer_id] = contact
        while len(bucket.replacements) > self.replacement_size:
            bucket.replacements.popitem(last=False)
        return next(iter(bucket.contacts.values()))

    def remove(self, peer_id: PeerId, now: float = 0.0) -> None:
        """Drop a dead contact and promote the freshest replacement in its place."""
        if peer_id == self.own_id:
            return
        bucket = self.bucket_of(peer_id)
        bucket.replacements.pop(peer_id, None)
        if bucket.contacts.pop(peer_id, None) is None:
            return
        self._filled = None
        bucket.last_changed = now
        while bucket.replacements:
            _, candidate = bucket.replacements.popitem(last=True)
            if self._subnet_allows(bucket, candidate):
                bucket.contacts[candidate.peer_id] = candidate
                break

    def record_failure(self, peer_id: PeerId, now: float, max_failures: int = 2) -> None:
        contact = self.get(peer_id)
        if contact is None:
            return
        contact.failures += 1
        if contact.failures >= max_failures or self.bucket_of(peer_id).replacements:
            self.remove(peer_id, now)

    def _subnet_allows(self, bucket: Bucket, contact: Contact) -> bool:
        subnet = contact.subnet
        if self.per_subnet is None or subnet is None:
            return True
        same = sum(1 for c in bucket.contacts.values() if c.subnet == subnet)
        return same < self.per_subnet

    def closest(self, target: bytes, count: int | None = None, exclude: PeerId | None = None) -> list[Contact]:
        """The ``count`` (default k) known contacts XOR-closest to ``target``.

        Every find_node answer calls this, so it visits buckets nearest-first instead of
        sorting the whole table. With ``i`` the bucket ``target`` falls in, bucket ``i`` holds
        the ids within 2^i of it, all buckets below ``i`` come next (their distance to
        ``target`` shares top bit ``i``, so they are sorted as one group), then buckets above
        ``i`` in increasing order: walking stops once ``count`` contacts are gathered.
        """
        count = self.k if count is None else count
        target_int = int.from_bytes(target, "big")
        skip = exclude.raw if exclude is not None else None
        if self._filled is None:
            self._filled = [i for i, b in enumerate(self.buckets) if b.contacts]
        filled = self._filled
        distance = target_int ^ self.own_id.as_int
        groups: list[list[int]]
        if distance == 0:  # our own id: every bucket is its own distance band, nearest first
            groups = [[j] for j in filled]
        else:
            i = distance.bit_length() - 1
            groups = [[i], [j for j in filled if j < i], *([j] for j in filled if j > i)]
        found: list[Contact] = []
        for group in groups:
            members = [c for j in group for c in self.buckets[j].contacts.values() if c.peer_id.raw != skip]
            if not members:
                continue
            members.sort(key=lambda c: c.peer_id.as_int ^ target_int)
            found.extend(members)
            if len(found) >= count:
                break
        return found[:count]

    def all_contacts(self) -> list[Contact]:
        return [c for b in self.buckets for c in b.contacts.values()]

    def stale_buckets(self, now: float, idle: float) -> list[int]:
        """Indices of non-empty-range buckets untouched for ``idle`` seconds."""
        lowest = min((i for i, b in enumerate(self.buckets) if b.contacts), default=ID_BITS)
        return [i for i in range(lowest, ID_BITS) if now - self.buckets[i].last_changed >= idle]
