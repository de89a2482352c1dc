"""Signed states: the fast hash equals the cell's, and both encodings round-trip or refuse cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytoniq_core import begin_cell

from cocoon_p2p.identity import Identity
from cocoon_p2p.payments import cells
from cocoon_p2p.payments.cells import SemiChannelBody
from cocoon_p2p.payments.params import MAX_AMOUNT, SignedState

KEY = Identity(b"\x09" * 32)
bodies = st.builds(SemiChannelBody, st.integers(0, 2**64 - 1), st.integers(0, MAX_AMOUNT))
channel_ids = st.integers(0, 2**128 - 1)


@given(channel_ids, bodies, st.none() | bodies)
def test_fast_state_hash_is_the_cell_hash(channel_id: int, mine: SemiChannelBody, cp: SemiChannelBody | None) -> None:
    assert cells.semichannel_state_hash(channel_id, mine, cp) == cells.semichannel_state(channel_id, mine, cp).hash


@given(channel_ids, bodies, st.none() | bodies)
def test_both_encodings_round_trip(channel_id: int, mine: SemiChannelBody, cp: SemiChannelBody | None) -> None:
    state = SignedState.sign(KEY, channel_id, mine.seqno, mine.sent, cp)
    assert state.verify(KEY.public_key)
    assert SignedState.from_wire(state.to_wire()) == state
    assert SignedState.from_bytes(state.to_bytes()) == state
    # the signature is the one the contract checks: over the hash of the cell inside the BOC
    parsed = cells.parse_signed_semichannel(state.to_cell())
    assert cells.verify_cell(parsed.state, KEY.public_key, parsed.signature)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda w: {k: v for k, v in w.items() if k != "sig"},
        lambda w: {**w, "sig": b"\x00" * 63},
        lambda w: {**w, "cid": b"\x01" * 15},
        lambda w: {**w, "seqno": -1},
        lambda w: {**w, "seqno": True},
        lambda w: {**w, "sent": 2**64},
        lambda w: {**w, "cp": [1]},
        lambda w: {**w, "cp": "x"},
        lambda w: [],
    ],
)
def test_malformed_wire_states_are_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    wire = SignedState.sign(KEY, 5, 1, 10, SemiChannelBody(0, 0)).to_wire()
    with pytest.raises(ValueError):
        SignedState.from_wire(mangle(wire))


def test_malformed_bocs_are_refused() -> None:
    with pytest.raises(ValueError):
        SignedState.from_bytes(b"not a boc")
    state = SignedState.sign(KEY, 5, 1, 10, None)
    with_conditionals = cells.signed_semichannel(  # valid TL-B, but this protocol signs no conditionals
        state.signature,
        begin_cell().store_uint(cells.TAG_STATE, 32).store_uint(5, 128).store_uint(1, 64).store_coins(10)
        .store_maybe_ref(begin_cell().end_cell()).store_bit(0).end_cell(),
    )  # fmt: skip
    with pytest.raises(ValueError):
        SignedState.from_bytes(with_conditionals.to_boc())
