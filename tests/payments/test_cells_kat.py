"""Known-answer tests: our cells against tonweb 0.0.66's, byte for byte (shared/vectors/ton)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytoniq_core import Address, Cell

from cocoon_p2p.identity import Identity
from cocoon_p2p.payments import cells
from cocoon_p2p.payments.contract_code import CODE_HASH, ensure_contract_code

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
VECTORS = json.loads((SHARED / "vectors" / "ton" / "tonweb-payment-channel.json").read_text())
IN = VECTORS["inputs"]
OUT = VECTORS["outputs"]
CHANNEL_ID = int(IN["channel_id_hex"], 16)
KEY_A = Identity(bytes.fromhex(IN["seedA"]))
KEY_B = Identity(bytes.fromhex(IN["seedB"]))


def boc(cell: Cell) -> str:
    return cell.to_boc(hash_crc32=True).hex()


def data_cell() -> Cell:
    closing = IN["closingConfig"]
    return cells.channel_data_cell(
        key_a=KEY_A.public_key,
        key_b=KEY_B.public_key,
        channel_id=CHANNEL_ID,
        closing=cells.ClosingConfig(
            closing["quarantineDuration"], closing["misbehaviorFine"], closing["conditionalCloseDuration"]
        ),
        excess_fee=IN["excessFee"],
        address_a=Address(IN["addressA"]),
        address_b=Address(IN["addressB"]),
    )


def semichannel(is_a: bool) -> Cell:
    sc = IN["semichannel_A"]
    a = cells.SemiChannelBody(sc["mySeqno"], sc["mySentCoins"])
    b = cells.SemiChannelBody(sc["hisSeqno"], sc["hisSentCoins"])
    return cells.semichannel_state(CHANNEL_ID, a if is_a else b, b if is_a else a)


def close_part() -> Cell:
    st = IN["signed_state"]
    return cells.close_signed_part(CHANNEL_ID, st["balanceA"], st["balanceB"], st["seqnoA"], st["seqnoB"])


def test_public_keys() -> None:
    assert KEY_A.public_key.hex() == OUT["pubA"]
    assert KEY_B.public_key.hex() == OUT["pubB"]


def test_data_cell_is_tonweb_s() -> None:
    data = data_cell()
    assert data.hash.hex() == OUT["data_hash"]
    assert boc(data) == OUT["data_boc"]


def test_state_init_and_address() -> None:
    code = ensure_contract_code()
    assert code.hash.hex() == CODE_HASH
    init = cells.state_init(code, data_cell())
    assert init.serialize().hash.hex() == OUT["stateinit_hash"]
    assert cells.address_of(init).to_str(is_user_friendly=False) == OUT["address"]


def test_state_signatures() -> None:
    assert cells.sign_cell(semichannel(True), KEY_A).hex() == OUT["state_sigA"]
    assert cells.sign_cell(semichannel(False), KEY_B).hex() == OUT["state_sigB"]
    assert cells.verify_cell(semichannel(True), KEY_A.public_key, bytes.fromhex(OUT["state_sigA"]))
    assert not cells.verify_cell(semichannel(True), KEY_B.public_key, bytes.fromhex(OUT["state_sigA"]))


def test_signed_semichannel_and_its_parse() -> None:
    state = semichannel(True)
    signed = cells.signed_semichannel(cells.sign_cell(state, KEY_A), state)
    assert boc(signed) == OUT["signed_semichannel_A_boc"]
    parsed = cells.parse_signed_semichannel(Cell.one_from_boc(bytes.fromhex(OUT["signed_semichannel_A_boc"])))
    assert parsed.channel_id == CHANNEL_ID
    assert parsed.mine == cells.SemiChannelBody(5, 100_000_000)
    assert parsed.counterparty == cells.SemiChannelBody(3, 0)
    assert parsed.state.hash == state.hash
    assert parsed.signature.hex() == OUT["state_sigA"]


def test_cooperative_close_body() -> None:
    signature_a = cells.sign_cell(close_part(), KEY_A)
    assert signature_a.hex() == OUT["close_sigA"]
    # tonweb fills the missing counter-signature with zeros, as in the vector
    body = cells.cooperative_close_body(signature_a, cells.ZERO_SIGNATURE, close_part())
    assert boc(body) == OUT["close_body_boc"]


def test_init_body() -> None:
    init = IN["init"]
    body = cells.init_channel_body(KEY_A, True, CHANNEL_ID, init["balanceA"], init["balanceB"])
    assert boc(body) == OUT["init_body_boc"]
    signed = cells.init_signed_part(CHANNEL_ID, init["balanceA"], init["balanceB"])
    assert cells.sign_cell(signed, KEY_A).hex() == OUT["init_sigA"]


@pytest.mark.parametrize("bad", [b"", b"\x00" * 10])
def test_parse_rejects_garbage(bad: bytes) -> None:
    from pytoniq_core import begin_cell

    with pytest.raises(ValueError):
        cells.parse_signed_semichannel(begin_cell().store_bytes(bad).end_cell())
