"""opct.heap: with the threshold fixed, freed tensors of a few MB leave the process's memory."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "confstr") or not os.confstr("CS_GNU_LIBC_VERSION"),
                                reason="glibc only")

FREE_AND_MEASURE = """
import sys, torch
from opct.heap import return_large_frees
print(return_large_frees() if sys.argv[1] == "fixed" else None)
def rss_mb():
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmRSS"))
block = torch.ones(5 << 18)  # 5 MB, mapped; freeing it raises glibc's threshold above 5 MB
del block
blocks, pins = [], []
for _ in range(40):
    blocks.append(torch.ones((5 << 18) - 4096))
    pins.append(torch.ones(50_000))  # a 200 kB block after each, so the heap cannot shrink from its top
before = rss_mb()
del blocks
print(before - rss_mb())
"""


def freed_mb(mode: str, **env) -> tuple[str, int]:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", FREE_AND_MEASURE, mode], capture_output=True, text=True,
                         check=True, env={**base, **env}).stdout.split()
    return out[0], int(out[1])


def test_fixed_threshold_returns_freed_blocks_to_the_system():
    assert freed_mb("default")[1] < 50  # glibc's default keeps the 200 MB in its heap
    set_, freed = freed_mb("fixed")
    assert set_ == "True" and freed > 150


def test_switched_off_or_glibc_variable_set_by_the_user():
    set_, freed = freed_mb("fixed", OPCT_HEAP="0")
    assert set_ == "False" and freed < 50
    set_, freed = freed_mb("fixed", MALLOC_MMAP_THRESHOLD_="134217728")  # the user's fixed threshold
    assert set_ == "False" and freed < 50


def test_bad_switch_is_a_user_error(monkeypatch):
    from opct.errors import UserError
    from opct.heap import return_large_frees

    monkeypatch.setenv("OPCT_HEAP", "yes")
    with pytest.raises(UserError, match="OPCT_HEAP must be 0 or 1"):
        return_large_frees.__wrapped__()
