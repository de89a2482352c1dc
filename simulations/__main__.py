"""Entry point for ``python -m simulations``."""

from __future__ import annotations

import os
import sys


def _pin_hash_seed() -> None:
    # Set/dict order of str and bytes keys depends on the per-process hash seed; a
    # protocol that iterates a set would then schedule work differently from run to
    # run. The seed can only be chosen at interpreter start, hence the re-exec.
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, sys.orig_argv, env)  # orig_argv keeps interpreter flags


if __name__ == "__main__":
    _pin_hash_seed()
    from .cli import main

    sys.exit(main())
