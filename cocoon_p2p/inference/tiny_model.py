"""A tiny random-weight llama GGUF that llama.cpp loads in milliseconds.

Tests use it to exercise the engine's mechanics (streaming, counting, stops,
cancellation) without paying for a real model; its output is gibberish, but the
same seed always writes the same file, so greedy output is reproducible.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TINY_MODEL_NAME = "tiny-random-llama"

_N_EMBD = 64
_N_HEAD = 4
_N_FF = 128
_N_LAYER = 2
_N_CTX_TRAIN = 1024
_WORDS = (
    "the a of and to in is it you that he was for on are with as I his they be at one have this from "
    "or had by word but what some we can out other were all there when up use your how said an each "
    "she which do their time if will way about many then them write would like so these her long make "
    "thing see him two has look more day could go come did number sound no most people my over know"
).split()


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style vocab: specials, the 256 byte-fallback tokens, letters, words."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = ["\u2581", *"abcdefghijklmnopqrstuvwxyz", *(f"\u2581{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    pieces += [f"\u2581{w}" for w in _WORDS if f"\u2581{w}" not in pieces]
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    # SPM merges prefer higher scores; longer pieces win so words tokenize as one token.
    scores = [0.0] * (3 + 256) + [float(len(p)) for p in pieces]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(path: Path | str, seed: int = 0) -> Path:
    """Write a ~0.5 MB random llama GGUF to ``path`` (deterministic for a given seed)."""
    import gguf
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, "llama")
    writer.add_name(TINY_MODEL_NAME)
    writer.add_basename(TINY_MODEL_NAME)
    writer.add_context_length(_N_CTX_TRAIN)
    writer.add_embedding_length(_N_EMBD)
    writer.add_block_count(_N_LAYER)
    writer.add_feed_forward_length(_N_FF)
    writer.add_head_count(_N_HEAD)
    writer.add_head_count_kv(_N_HEAD)
    writer.add_rope_dimension_count(_N_EMBD // _N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    def dense(rows: int, cols: int) -> Any:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    writer.add_tensor("token_embd.weight", rng.standard_normal((n_vocab, _N_EMBD)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
    out = dense(n_vocab, _N_EMBD) * 8.0
    # A zero row gives logit 0 while the best printable token is almost surely
    # positive, so greedy decoding never emits EOS, control tokens, or stray
    # UTF-8 continuation bytes: the output is long ASCII gibberish.
    printable = {3 + b for b in range(0x20, 0x7F)} | {3 + 0x0A} | set(range(3 + 256, n_vocab))
    out[[i for i in range(n_vocab) if i not in printable]] = 0.0
    writer.add_tensor("output.weight", out)
    for layer in range(_N_LAYER):
        blk = f"blk.{layer}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{blk}.{name}.weight", dense(_N_EMBD, _N_EMBD))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", dense(_N_FF, _N_EMBD))
        writer.add_tensor(f"{blk}.ffn_up.weight", dense(_N_FF, _N_EMBD))
        writer.add_tensor(f"{blk}.ffn_down.weight", dense(_N_EMBD, _N_FF))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path
