"""Freed tensors of a few MB go back to the system (glibc's malloc, Linux).

glibc serves a request from its heap unless the request reaches the mmap threshold, and it raises
that threshold (up to 32 MB) each time a mapped block is freed. A training step's tensors of a few MB
then come from the heap, and once freed they mostly stay there, counted in the process's memory:
Qwen2.5-Coder-0.5B's OPCT step peaked at 9.8 GB of RSS with the default and at 7.6 GB with the
threshold fixed at 4 MB, for about 3% of its time (benchmarks/README.md, "Freed memory the C heap
kept"). `return_large_frees` fixes the threshold; `OPCT_HEAP=0` leaves glibc's default, and glibc's
own `MALLOC_MMAP_THRESHOLD_`, when set, wins.
"""

from __future__ import annotations

import ctypes
import functools
import os

from opct.errors import UserError

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
THRESHOLD_BYTES = 4 << 20


@functools.lru_cache(maxsize=None)
def return_large_frees(threshold: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes for this process, so that every block of that
    size or more is its own mapping, unmapped when freed. True when set; False off glibc, with
    `OPCT_HEAP=0`, or where the user set `MALLOC_MMAP_THRESHOLD_`."""
    switch = os.environ.get("OPCT_HEAP")
    if switch not in (None, "", "0", "1"):
        raise UserError(f"OPCT_HEAP must be 0 or 1, not {switch!r}")
    if switch == "0" or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
