"""Whether opct computes in bf16 on a device.

bf16 autocast over fp32 weights is opct's default where bf16 matmuls are native: Ampere and later
GPUs, and CPUs with AVX-512 (there about 1.5x faster than fp32 for the embedded models). On a CPU
without it torch emulates bf16 matmuls: on a 2-core AMD EPYC with AVX2 only (2026-12-06) a
1024x1024 matmul ran at 0.0009 TFLOP/s in bf16 against 0.078 in fp32, 90x slower. There opct
computes in fp32, and says so once. `OPCT_BF16=1` (or `0`) overrides the choice on any device.
"""

from __future__ import annotations

import functools
import os
import sys

import torch

from opct.errors import UserError


@functools.lru_cache(maxsize=None)
def _hardware_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)  # native only (Ampere and later)
    if device_type != "cpu":
        return True  # mps and others: autocast decides what it supports
    try:  # what torch's own CPU autocast tests ask: oneDNN's bf16 kernels (AVX-512 on x86, bf16 on Arm)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return torch.backends.cpu.get_cpu_capability() == "AVX512"


_told: set[str] = set()


def bf16_is_fast(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matmuls are native on `device` (`OPCT_BF16=0|1` overrides)."""
    forced = os.environ.get("OPCT_BF16")
    if forced not in (None, "", "0", "1"):
        raise UserError(f"OPCT_BF16 must be 0 or 1, not {forced!r}")
    if forced:
        return forced == "1"
    device_type = torch.device(device).type
    fast = _hardware_bf16(device_type)
    if not fast and device_type not in _told:
        _told.add(device_type)
        print(f"opct: bf16 is emulated on this {device_type} (no native bf16 matmul), so opct computes in fp32 "
              f"here; OPCT_BF16=1 forces bf16", file=sys.stderr, flush=True)
    return fast


def use_bf16(requested: bool, device: torch.device | str, model=None) -> bool:
    """bf16 autocast for a call: when `requested` and bf16 is fast on `device`, and always for a
    `model` holding bf16 weights (a bf16 frozen base runs beside its fp32 adapter only under autocast)."""
    if model is not None and any(p.dtype == torch.bfloat16 for p in model.parameters()):
        return True
    return bool(requested) and bf16_is_fast(device)
