"""Incremental stop-sequence matching equals searching the whole text at once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cocoon_p2p.inference.generate import StopMatcher

ALPHABET = st.sampled_from("ab\n<>é")


def run(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, hit = matcher.feed(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


def reference(text: str, stops: list[str]) -> tuple[str, bool]:
    hits = [text.find(s) for s in stops if s in text]
    return (text[: min(hits)], True) if hits else (text, False)


@given(
    st.lists(st.text(ALPHABET, max_size=4), max_size=12),
    st.lists(st.text(ALPHABET, min_size=1, max_size=4), max_size=3),
)
def test_incremental_equals_whole_text(pieces: list[str], stops: list[str]) -> None:
    assert run(pieces, stops) == reference("".join(pieces), stops)


def test_holds_back_only_possible_prefixes() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.feed("hello <") == ("hello ", False)
    assert matcher.feed("/") == ("", False)
    assert matcher.feed("x") == ("</x", False)
    assert matcher.feed("</s> tail") == ("", True)
