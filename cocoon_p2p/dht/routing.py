"""The Kademlia routing table: 256 buckets of at most k contacts.

Least-recently-seen eviction with ping-before-evict: a newcomer to a full bucket
waits in that bucket's replacement cache; the service pings the oldest contact (when
it has been quiet a while) and only if the ping fails, or a query to a member fails,
does a waiting newcomer take the slot. At most ``per_subnet`` contacts
of one IPv4 /24 share a bucket, which makes eclipsing a bucket cost many networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import overload

from ..identity import PeerId
from ..net import split_address
from .distance import ID_BITS, bucket_index


@dataclass(slots=True)  # millions of them in a large simulation: no per-object __dict__
class Contact:
    peer_id: PeerId
    address: str
    last_seen: float = 0.0
    failures: int = 0

    @property
    def subnet(self) -> str | None:
        """The /24 of an IPv4 address, or None where the limit does not apply (loopback, IPv6, names)."""
        address = self.address
        try:
            return _subnets[address]
        except KeyError:
            pass
        if len(_subnets) >= _SUBNET_MEMO:
            _subnets.clear()  # a bound, not an LRU: a forgotten address is just parsed again
        value = _subnets[address] = _parse_subnet(address)
        return value


#: Every request a peer answers checks its caller's /24 (and a full bucket's check comes
#: before the replacement cache): parsing with ``ipaddress`` each time was a visible share
#: of a lookup. The value depends on the address string alone.
_SUBNET_MEMO = 8192
_subnets: dict[str, str | None] = {}


def _parse_subnet(address: str) -> str | None:
    try:
        host, _ = split_address(address)
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version != 4 or ip.is_loopback:
        return None
    return str(ipaddress.ip_network(f"{ip}/24", strict=False))


@dataclass(slots=True)
class Bucket:
    # Keyed by raw id bytes in plain dicts (insertion order = least recently seen first): a
    # PeerId key costs a Python-level __hash__ per lookup, and iterating an OrderedDict's
    # values hashes every key again, which made closest() a third of a lookup's table time.
    contacts: dict[bytes, Contact] = field(default_factory=dict)  # oldest first
    replacements: dict[bytes, Contact] = field(default_factory=dict)  # oldest first
    #: When a contact in it was last seen, or a lookup last covered its range: what
    #: decides whether the bucket needs a refresh lookup.
    last_changed: float = 0.0
    #: Contacts per /24 in ``contacts``, kept by RoutingTable so the per-subnet check
    #: is one dict read instead of a scan of the bucket on every insert.
    subnets: dict[str, int] = field(default_factory=dict)


class Buckets(Sequence[Bucket]):
    """The 256 buckets, each made on first use.

    A table only ever fills the ~log2(N) buckets nearest the far half, and an empty
    bucket costs ~350 bytes, so eager allocation made 256 of them per peer (about
    90 KB) — most of a 10,000-peer simulation's memory. Indexing or iterating
    materialises a bucket, so callers see the same objects as before; the table's own
    scans go through :meth:`existing` and allocate nothing.
    """

    __slots__ = ("_made", "_order")

    def __init__(self) -> None:
        self._made: dict[int, Bucket] = {}
        self._order: list[int] | None = None  # sorted indices of _made, rebuilt after a bucket is made

    def __len__(self) -> int:
        return ID_BITS

    @overload
    def __getitem__(self, index: int) -> Bucket: ...

    @overload
    def __getitem__(self, index: slice) -> list[Bucket]: ...

    def __getitem__(self, index: int | slice) -> Bucket | list[Bucket]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(ID_BITS))]
        if index < 0:
            index += ID_BITS
        if not 0 <= index < ID_BITS:
            raise IndexError("bucket index out of range")
        bucket = self._made.get(index)
        if bucket is None:
            bucket = self._made[index] = Bucket()
            self._order = None
        return bucket

    def peek(self, index: int) -> Bucket | None:
        """The bucket if it was ever used, without allocating one."""
        return self._made.get(index)

    def made_indices(self) -> list[int]:
        """Indices of the buckets made so far, ascending (the others are empty)."""
        if self._order is None:
            self._order = sorted(self._made)
        return self._order

    def existing(self) -> list[Bucket]:
        """Buckets made so far, in index order (the others are empty)."""
        return [self._made[i] for i in self.made_indices()]


class RoutingTable:
    def __init__(
        self, own_id: PeerId, *, k: int = 20, per_subnet: int | None = 2, replacement_size: int | None = None
    ) -> None:
        self.own_id = own_id
        self.k = k
        self.per_subnet = per_subnet
        self.replacement_size = replacement_size or k
        self.buckets = Buckets()

    def __len__(self) -> int:
        return sum(len(b.contacts) for b in self.buckets.existing())

    def __contains__(self, peer_id: PeerId) -> bool:
        if peer_id.raw == self.own_id.raw:
            return False
        bucket = self.buckets.peek(bucket_index(self.own_id.raw, peer_id.raw))
        return bucket is not None and peer_id.raw in bucket.contacts

    def bucket_of(self, peer_id: PeerId) -> Bucket:
        return self.buckets[bucket_index(self.own_id.raw, peer_id.raw)]

    def get(self, peer_id: PeerId) -> Contact | None:
        if peer_id.raw == self.own_id.raw:
            return None
        bucket = self.buckets.peek(bucket_index(self.own_id.raw, peer_id.raw))
        return bucket.contacts.get(peer_id.raw) if bucket is not None else None

    def add(self, contact: Contact, now: float) -> Contact | None:
        """Record that ``contact`` is alive.

        Returns the bucket's least-recently-seen contact when the bucket is full and
        the newcomer was parked in the replacement cache: the caller should ping it
        and call :meth:`remove` if it does not answer (or :meth:`add` it if it does).
        """
        raw = contact.peer_id.raw
        if raw == self.own_id.raw:
            return None
        bucket = self.buckets[bucket_index(self.own_id.raw, raw)]
        contact.last_seen = now
        existing = bucket.contacts.get(raw)
        if existing is not None:
            existing.last_seen = now
            existing.failures = 0
            # Taken out and put back, so it moves to the most-recently-seen end.
            if existing.address == contact.address:
                del bucket.contacts[raw]
                bucket.contacts[raw] = existing
            else:
                self._discard(bucket, raw)
                if self._subnet_allows(bucket, contact):  # a moved peer must not push its new /24 over the limit
                    existing.address = contact.address
                self._insert(bucket, existing)
            bucket.last_changed = now
            return None
        if not self._subnet_allows(bucket, contact):
            return None
        if len(bucket.contacts) < self.k:
            self._insert(bucket, contact)
            bucket.replacements.pop(raw, None)
            bucket.last_changed = now
            return None
        bucket.replacements.pop(raw, None)
        bucket.replacements[raw] = contact
        while len(bucket.replacements) > self.replacement_size:
            del bucket.replacements[next(iter(bucket.replacements))]
        return next(iter(bucket.contacts.values()))

    def remove(self, peer_id: PeerId, now: float = 0.0) -> None:
        """Drop a dead contact and promote the freshest replacement in its place."""
        if peer_id.raw == self.own_id.raw:
            return
        bucket = self.buckets.peek(bucket_index(self.own_id.raw, peer_id.raw))
        if bucket is None:
            return
        bucket.replacements.pop(peer_id.raw, None)
        if self._discard(bucket, peer_id.raw) is None:
            return
        bucket.last_changed = now
        while bucket.replacements:
            _, candidate = bucket.replacements.popitem()  # the freshest
            if self._subnet_allows(bucket, candidate):
                self._insert(bucket, candidate)
                break

    def record_failure(self, peer_id: PeerId, now: float, max_failures: int = 2) -> None:
        contact = self.get(peer_id)
        if contact is None:
            return
        contact.failures += 1
        if contact.failures >= max_failures or self.bucket_of(peer_id).replacements:
            self.remove(peer_id, now)

    def _subnet_allows(self, bucket: Bucket, contact: Contact) -> bool:
        if self.per_subnet is None:
            return True
        subnet = contact.subnet
        return subnet is None or bucket.subnets.get(subnet, 0) < self.per_subnet

    # Every change to ``bucket.contacts`` goes through these two, which keep ``bucket.subnets``.
    def _insert(self, bucket: Bucket, contact: Contact) -> None:
        bucket.contacts[contact.peer_id.raw] = contact
        subnet = contact.subnet
        if subnet is not None:
            bucket.subnets[subnet] = bucket.subnets.get(subnet, 0) + 1

    def _discard(self, bucket: Bucket, raw: bytes) -> Contact | None:
        contact = bucket.contacts.pop(raw, None)
        if contact is not None:
            subnet = contact.subnet
            if subnet is not None:
                left = bucket.subnets[subnet] - 1
                if left:
                    bucket.subnets[subnet] = left
                else:
                    del bucket.subnets[subnet]
        return contact

    def closest(self, target: bytes, count: int | None = None, exclude: PeerId | None = None) -> list[Contact]:
        """The ``count`` (default k) known contacts XOR-closest to ``target``."""
        count = self.k if count is None else count
        target_int = int.from_bytes(target, "big")
        # Visit buckets nearest-first instead of sorting the whole table on every
        # find_node. With ``t`` the target's bucket (relative to our id), contacts in
        # bucket t are within 2^t of the target, those of every bucket below t lie in
        # [2^t, 2^(t+1)), and bucket j > t lies in [2^j, 2^(j+1)). Whole groups are
        # taken in that order until ``count`` are in hand, then sorted: the same answer
        # as a full sort, since distances between distinct ids never tie.
        # (For our own id as target, t = -1: bucket j is simply [2^j, 2^(j+1)) away.)
        # Only buckets ever made are visited: a table fills about log2(N) of the 256.
        t = (self.own_id.as_int ^ target_int).bit_length() - 1
        made = self.buckets.made_indices()
        peek = self.buckets.peek
        skip = exclude.raw if exclude is not None else None
        picked: list[Contact] = []

        def take(index: int) -> None:
            bucket = peek(index)
            if bucket is not None:
                contacts = bucket.contacts
                if skip is not None and skip in contacts:
                    picked.extend(c for c in contacts.values() if c.peer_id.raw != skip)
                else:
                    picked.extend(contacts.values())

        if t >= 0:
            take(t)
            if len(picked) < count:
                for index in made:
                    if index >= t:
                        break
                    take(index)
        if len(picked) < count:
            for index in made:
                if index > t:
                    take(index)
                    if len(picked) >= count:
                        break
        picked.sort(key=lambda c: c.peer_id.as_int ^ target_int)
        return picked[:count]

    def all_contacts(self) -> list[Contact]:
        return [c for b in self.buckets.existing() for c in b.contacts.values()]

    def _lowest_filled(self) -> int:
        peek = self.buckets.peek
        return next((i for i in self.buckets.made_indices() if (b := peek(i)) is not None and b.contacts), ID_BITS)

    def mark_looked_up(self, target: bytes, kth_distance: int | None, now: float) -> None:
        """Record a finished lookup of ``target`` as a refresh of the buckets it covered.

        The bucket holding ``target`` counts as refreshed (the Kademlia paper's rule: a
        bucket needs a refresh when no lookup went into its range). And with
        ``kth_distance`` — the distance from ``target`` of the k-th closest peer that
        answered — every peer nearer to ``target`` than that was found, so each bucket
        whose whole range lies nearer is refreshed too: a lookup of our own id covers the
        buckets inside our k closest, and one into a sparse bucket spills into those below.
        """
        d = self.own_id.as_int ^ int.from_bytes(target, "big")
        t = d.bit_length() - 1  # the target's bucket; -1 for our own id
        if t >= 0:
            self._touch(t, now)
        if kth_distance is None:
            return
        for i in range(self._lowest_filled(), ID_BITS):
            if i == t:
                continue
            if i > t:
                farthest = (1 << (i + 1)) - 1
            else:
                # Ids of bucket i differ from ours in bit i and above it only there: their
                # distance to the target keeps d's bits above i, flips bit i, frees those below.
                farthest = ((d >> (i + 1)) << (i + 1)) | ((~d >> i & 1) << i) | ((1 << i) - 1)
            if farthest < kth_distance:
                self._touch(i, now)

    def _touch(self, index: int, now: float) -> None:
        bucket = self.buckets[index]
        bucket.last_changed = max(bucket.last_changed, now)

    def stale_buckets(self, now: float, idle: float) -> list[int]:
        """Indices of non-empty-range buckets untouched for ``idle`` seconds."""
        peek = self.buckets.peek
        stale = []
        for i in range(self._lowest_filled(), ID_BITS):
            bucket = peek(i)
            # A bucket never made was never changed: 0.0, what an eagerly made one would say.
            changed = bucket.last_changed if bucket is not None else 0.0
            if now - changed >= idle:
                stale.append(i)
        return stale
