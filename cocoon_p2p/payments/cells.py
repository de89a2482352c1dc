"""Cells of the official async payment-channel contract, byte-identical to tonweb 0.0.66.

Layouts are in DESIGN.md §9. Every signed message body is ``op``, then signature(s), then the *signed
part* spliced in (its bits and refs appended, not referenced); a signature is ed25519 over the signed
part's representation hash. A ``Signer`` is anything with ``public_key`` and ``sign(bytes) -> 64
bytes`` -- :class:`cocoon_p2p.identity.Identity` is one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from pytoniq_core import Address, Builder, Cell, Slice, StateInit, begin_cell

from ..identity import verify_signature

TAG_INIT = 0x696E6974
TAG_COOPERATIVE_CLOSE = 0x436C6F73
TAG_COOPERATIVE_COMMIT = 0x43436D74
TAG_START_UNCOOPERATIVE_CLOSE = 0x556E436C
TAG_CHALLENGE_STATE = 0x43686751
TAG_SETTLE_CONDITIONALS = 0x436C436E
TAG_STATE = 0x43685374

OP_TOP_UP_BALANCE = 0x67C7D281
OP_INIT_CHANNEL = 0x0E0620C2
OP_COOPERATIVE_CLOSE = 0x5577587E
OP_COOPERATIVE_COMMIT = 0x79A126EF
OP_START_UNCOOPERATIVE_CLOSE = 0x1F151ACF
OP_CHALLENGE_QUARANTINED_STATE = 0x088EAA32
OP_SETTLE_CONDITIONALS = 0x66F6F069
OP_FINISH_UNCOOPERATIVE_CLOSE = 0x25432A91
OP_CHANNEL_CLOSED = 0xDDDC88BA  # crc32 of "channel_closed ..." as unsigned; the payout messages carry it

ZERO_SIGNATURE = bytes(64)


class Signer(Protocol):
    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ClosingConfig:
    """Seconds of quarantine (challenge window), the cheater's fine in nanoTON, seconds to settle conditionals."""

    quarantine_duration: int = 3600
    misbehavior_fine: int = 0
    conditional_close_duration: int = 1800


def sign_cell(cell: Cell, signer: Signer) -> bytes:
    return signer.sign(cell.hash)


def verify_cell(cell: Cell, public_key: bytes, signature: bytes) -> bool:
    return verify_signature(public_key, cell.hash, signature)


def _key(builder: Builder, key: bytes) -> Builder:
    if len(key) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    return builder.store_bytes(key)


def _sig(builder: Builder, signature: bytes) -> Builder:
    if len(signature) != 64:
        raise ValueError("an ed25519 signature is 64 bytes")
    return builder.store_bytes(signature)


# ---- storage, StateInit, address ----


def channel_data_cell(
    *,
    key_a: bytes,
    key_b: bytes,
    channel_id: int,
    closing: ClosingConfig,
    excess_fee: int,
    address_a: Address,
    address_b: Address,
) -> Cell:
    """The contract's initial storage: not inited, zero balances, committed seqnos 0, no quarantine."""
    config = (
        begin_cell()
        .store_uint(closing.quarantine_duration, 32)
        .store_coins(closing.misbehavior_fine)
        .store_uint(closing.conditional_close_duration, 32)
        .end_cell()
    )
    payment = begin_cell().store_coins(excess_fee).store_address(address_a).store_address(address_b).end_cell()
    b = begin_cell().store_bit(0).store_coins(0).store_coins(0)
    _key(_key(b, key_a), key_b)
    return (
        b.store_uint(channel_id, 128)
        .store_ref(config)
        .store_uint(0, 32)
        .store_uint(0, 32)
        .store_bit(0)
        .store_ref(payment)
        .end_cell()
    )


def state_init(code: Cell, data: Cell) -> StateInit:
    return StateInit(code=code, data=data)


def address_of(init: StateInit, workchain: int = 0) -> Address:
    return Address((workchain, init.serialize().hash))


# ---- semichannel states ----


@dataclass(frozen=True, slots=True)
class SemiChannelBody:
    seqno: int
    sent: int


def semichannel_body(body: SemiChannelBody) -> Cell:
    return begin_cell().store_uint(body.seqno, 64).store_coins(body.sent).store_bit(0).end_cell()


def semichannel_state(channel_id: int, mine: SemiChannelBody, counterparty: SemiChannelBody | None) -> Cell:
    """What a party signs: its own seqno and cumulative ``sent``, optionally the counterparty's it has seen."""
    b = begin_cell().store_uint(TAG_STATE, 32).store_uint(channel_id, 128).store_cell(semichannel_body(mine))
    return b.store_maybe_ref(None if counterparty is None else semichannel_body(counterparty)).end_cell()


def _coins(amount: int) -> tuple[int, int]:
    """(value, bit count) of a Coins field: 4-bit byte length, then the big-endian bytes."""
    n = (amount.bit_length() + 7) // 8
    if n > 15:
        raise ValueError("amount does not fit in Coins")
    return (n << (8 * n)) | amount, 4 + 8 * n


def _ordinary_cell_hash(value: int, nbits: int, refs: tuple[tuple[bytes, int], ...] = ()) -> tuple[bytes, int]:
    """(representation hash, depth) of an ordinary level-0 cell whose data are the ``nbits`` low bits
    of ``value`` -- the hashing pytoniq does, without building cells (the payment hot path)."""
    d1, d2 = len(refs), nbits // 8 + (nbits + 7) // 8
    if nbits % 8:  # completion tag: a 1 bit, then zeros to the byte boundary
        pad = 8 - nbits % 8
        value, nbits = (value << pad) | (1 << (pad - 1)), nbits + pad
    parts = [bytes((d1, d2)), value.to_bytes(nbits // 8, "big")]
    parts += [depth.to_bytes(2, "big") for _, depth in refs]
    parts += [h for h, _ in refs]
    return hashlib.sha256(b"".join(parts)).digest(), (1 + max(d for _, d in refs)) if refs else 0


def _body_bits(body: SemiChannelBody) -> tuple[int, int]:
    coins, coins_bits = _coins(body.sent)
    return ((((body.seqno << coins_bits) | coins) << 1), 64 + coins_bits + 1)  # trailing 0: no conditionals


def semichannel_state_hash(channel_id: int, mine: SemiChannelBody, counterparty: SemiChannelBody | None) -> bytes:
    """``semichannel_state(...).hash``, computed directly (tests hold it equal to the cell's)."""
    body, body_bits = _body_bits(mine)
    value = (((TAG_STATE << 128) | channel_id) << body_bits) | body
    value, nbits = (value << 1) | (counterparty is not None), 32 + 128 + body_bits + 1
    refs: tuple[tuple[bytes, int], ...] = ()
    if counterparty is not None:
        refs = (_ordinary_cell_hash(*_body_bits(counterparty)),)
    return _ordinary_cell_hash(value, nbits, refs)[0]


def signed_semichannel(signature: bytes, state: Cell) -> Cell:
    return _sig(begin_cell(), signature).store_cell(state).end_cell()


@dataclass(frozen=True, slots=True)
class ParsedSemiChannel:
    signature: bytes
    channel_id: int
    mine: SemiChannelBody
    counterparty: SemiChannelBody | None
    state: Cell  # the signed part, to check the signature against


def _load_body(s: Slice) -> SemiChannelBody:
    seqno, sent = s.load_uint(64), s.load_coins()
    if s.load_bit():
        s.load_ref()  # conditionals: this project never signs any, so their content is not needed
    return SemiChannelBody(seqno, sent)


def parse_signed_semichannel(cell: Cell) -> ParsedSemiChannel:
    """Parse (not verify) a SignedSemiChannel; raises ValueError on anything malformed."""
    try:
        s = cell.begin_parse()
        signature = s.load_bytes(64)
        state = begin_cell().store_slice(s).end_cell()
        s = state.begin_parse()
        if s.load_uint(32) != TAG_STATE:
            raise ValueError("not a semichannel state (wrong tag)")
        channel_id = s.load_uint(128)
        mine = _load_body(s)
        counterparty = _load_body(s.load_ref().begin_parse()) if s.load_bit() else None
    except ValueError:
        raise
    except Exception as exc:  # pytoniq raises assorted types on short slices
        raise ValueError(f"malformed signed semichannel: {exc}") from None
    return ParsedSemiChannel(signature, channel_id, mine, counterparty, state)


# ---- signed parts and message bodies ----


def init_signed_part(channel_id: int, balance_a: int, balance_b: int) -> Cell:
    return (
        begin_cell()
        .store_uint(TAG_INIT, 32)
        .store_uint(channel_id, 128)
        .store_coins(balance_a)
        .store_coins(balance_b)
        .end_cell()
    )


def close_signed_part(channel_id: int, balance_a: int, balance_b: int, seqno_a: int, seqno_b: int) -> Cell:
    return (
        begin_cell()
        .store_uint(TAG_COOPERATIVE_CLOSE, 32)
        .store_uint(channel_id, 128)
        .store_coins(balance_a)
        .store_coins(balance_b)
        .store_uint(seqno_a, 64)
        .store_uint(seqno_b, 64)
        .end_cell()
    )


def commit_signed_part(channel_id: int, seqno_a: int, seqno_b: int) -> Cell:
    return (
        begin_cell()
        .store_uint(TAG_COOPERATIVE_COMMIT, 32)
        .store_uint(channel_id, 128)
        .store_uint(seqno_a, 64)
        .store_uint(seqno_b, 64)
        .end_cell()
    )


def _two_states(tag: int, channel_id: int, signed_a: Cell, signed_b: Cell) -> Cell:
    b = begin_cell().store_uint(tag, 32).store_uint(channel_id, 128)
    return b.store_ref(signed_a).store_ref(signed_b).end_cell()


def uncooperative_close_signed_part(channel_id: int, signed_a: Cell, signed_b: Cell) -> Cell:
    return _two_states(TAG_START_UNCOOPERATIVE_CLOSE, channel_id, signed_a, signed_b)


def challenge_signed_part(channel_id: int, signed_a: Cell, signed_b: Cell) -> Cell:
    return _two_states(TAG_CHALLENGE_STATE, channel_id, signed_a, signed_b)


def settle_signed_part(channel_id: int, conditionals: Cell | None) -> Cell:
    b = begin_cell().store_uint(TAG_SETTLE_CONDITIONALS, 32).store_uint(channel_id, 128)
    return b.store_dict(conditionals).end_cell()


def one_signature_body(op: int, is_a: bool, signature: bytes, signed: Cell) -> Cell:
    return _sig(begin_cell().store_uint(op, 32).store_bit(int(is_a)), signature).store_cell(signed).end_cell()


def two_signature_body(op: int, signature_a: bytes, signature_b: bytes, signed: Cell) -> Cell:
    refs = [_sig(begin_cell(), sig).end_cell() for sig in (signature_a, signature_b)]
    return begin_cell().store_uint(op, 32).store_ref(refs[0]).store_ref(refs[1]).store_cell(signed).end_cell()


def top_up_body(add_a: int, add_b: int) -> Cell:
    return begin_cell().store_uint(OP_TOP_UP_BALANCE, 32).store_coins(add_a).store_coins(add_b).end_cell()


def finish_body() -> Cell:
    return begin_cell().store_uint(OP_FINISH_UNCOOPERATIVE_CLOSE, 32).end_cell()


def init_channel_body(signer: Signer, is_a: bool, channel_id: int, balance_a: int, balance_b: int) -> Cell:
    signed = init_signed_part(channel_id, balance_a, balance_b)
    return one_signature_body(OP_INIT_CHANNEL, is_a, sign_cell(signed, signer), signed)


def cooperative_close_body(signature_a: bytes, signature_b: bytes, signed: Cell) -> Cell:
    return two_signature_body(OP_COOPERATIVE_CLOSE, signature_a, signature_b, signed)


def cooperative_commit_body(signature_a: bytes, signature_b: bytes, signed: Cell) -> Cell:
    return two_signature_body(OP_COOPERATIVE_COMMIT, signature_a, signature_b, signed)


def start_uncooperative_close_body(signer: Signer, is_a: bool, channel_id: int, signed_a: Cell, signed_b: Cell) -> Cell:
    signed = uncooperative_close_signed_part(channel_id, signed_a, signed_b)
    return one_signature_body(OP_START_UNCOOPERATIVE_CLOSE, is_a, sign_cell(signed, signer), signed)


def challenge_body(signer: Signer, is_a: bool, channel_id: int, signed_a: Cell, signed_b: Cell) -> Cell:
    signed = challenge_signed_part(channel_id, signed_a, signed_b)
    return one_signature_body(OP_CHALLENGE_QUARANTINED_STATE, is_a, sign_cell(signed, signer), signed)


def settle_conditionals_body(signer: Signer, is_a: bool, channel_id: int, conditionals: Cell | None) -> Cell:
    signed = settle_signed_part(channel_id, conditionals)
    return one_signature_body(OP_SETTLE_CONDITIONALS, is_a, sign_cell(signed, signer), signed)


# ---- the quarantine cell in get_channel_data ----


@dataclass(frozen=True, slots=True)
class Quarantine:
    state_a: SemiChannelBody
    state_b: SemiChannelBody
    started: int
    committed_by_a: bool
    challenged: bool


def parse_quarantine(cell: Cell) -> Quarantine:
    s = cell.begin_parse()
    state_a = _load_body(s)
    state_b = _load_body(s)
    started = s.load_uint(32)
    committed_by_a = bool(s.load_bit())
    # settle_conditionals rewrites the cell without the challenged bit
    challenged = bool(s.load_bit()) if s.remaining_bits else False
    return Quarantine(state_a, state_b, started, committed_by_a, challenged)
