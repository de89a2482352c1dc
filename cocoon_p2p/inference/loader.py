"""Constructing ``llama_cpp.Llama`` instances safely on this machine."""

from __future__ import annotations

import sys
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

from cocoon_p2p.inference.errors import ModelFileError

_params_lock = threading.Lock()


@cache
def amx_build_on_amx_cpu() -> bool:
    """True when llama.cpp would put weights in its AMX buffers.

    Its AMX matmul segfaults on some Sapphire Rapids machines (upstream
    ggml-org/llama.cpp#20824, unfixed), reproducibly on gemma3 Q4_K_M here.
    """
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode(errors="replace")
    except Exception:  # no llama_cpp, or an old one without the call: nothing to avoid
        return False
    if "AMX_INT8 = 1" not in info:
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            return any(line.startswith("flags") and "amx_int8" in line.split() for line in fh)
    except OSError:
        return True


def new_llama(
    path: Path | str,
    *,
    n_ctx: int,
    n_threads: int,
    n_gpu_layers: int = 0,
    use_extra_bufts: bool | None = None,
) -> Any:
    """A ``Llama`` for ``path``; blocking, call it from a worker thread.

    ``use_extra_bufts`` None disables llama.cpp's extra weight buffers (AMX, CPU
    repacking) exactly when the AMX crash above could happen.
    """
    import llama_cpp
    from llama_cpp import llama_cpp as lowlevel

    if use_extra_bufts is None:
        use_extra_bufts = not amx_build_on_amx_cpu()
    kwargs: dict[str, Any] = {
        "model_path": str(path),
        "n_ctx": n_ctx,
        "n_batch": min(512, n_ctx),
        "n_threads": n_threads,
        "n_threads_batch": n_threads,
        "n_gpu_layers": n_gpu_layers,
        "verbose": False,
    }
    try:
        if use_extra_bufts:
            return llama_cpp.Llama(**kwargs)
        # Llama() takes its model params from llama_model_default_params() and has no
        # argument for use_extra_bufts, so hand it patched defaults for this one call.
        with _params_lock:
            original = lowlevel.llama_model_default_params

            def defaults_without_extra_bufts() -> Any:
                params = original()
                params.use_extra_bufts = False
                return params

            lowlevel.llama_model_default_params = defaults_without_extra_bufts
            try:
                return llama_cpp.Llama(**kwargs)
            finally:
                lowlevel.llama_model_default_params = original
    except ValueError as exc:  # llama-cpp-python's way of saying the file did not load
        raise ModelFileError(f"llama.cpp could not load {path}: {exc}") from exc


class LoadProgress:
    """A stderr ticker while a blocking load runs (the load itself reports nothing)."""

    def __init__(self, desc: str, total: int, *, enabled: bool) -> None:
        self._desc, self._total, self._enabled = desc, total, enabled
        self._done = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()

    def __enter__(self) -> LoadProgress:
        if self._enabled:
            self._thread = threading.Thread(target=self._tick, name="load-progress", daemon=True)
            self._thread.start()
        return self

    def advance(self) -> None:
        self._done += 1

    def _line(self) -> str:
        return f"\r{self._desc}: {self._done}/{self._total} contexts, {time.monotonic() - self._start:.1f}s"

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            sys.stderr.write(self._line())
            sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            sys.stderr.write(self._line() + (" - done\n" if exc[0] is None else " - failed\n"))
            sys.stderr.flush()
