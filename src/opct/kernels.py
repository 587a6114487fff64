"""Which library computes opct's fp32 `linear` layers on a CPU: MKL (torch's default) or oneDNN.

torch runs an fp32 `linear` on a CPU through MKL, and MKL takes slow code paths on AMD CPUs. On a
2-core AMD EPYC (Zen 1, AVX2 only; 2026-12-07) an [8, 576] x [576, 1536] product, a SmolLM2 layer at
8 decoding rows, took 0.93 ms with MKL and 0.59 ms with oneDNN (which ships inside torch), and the
[8, 576] x [576, 49152] output layer 44 ms against 16 ms; sampling ran 1.58x faster on SmolLM2 and
2.01x on Qwen2.5-Coder-0.5B (benchmarks/README.md, "MKL on an AMD CPU"). So on an AMD CPU with torch's MKL, `onednn_linears`
turns a model's `nn.Linear` layers into `OneDNNLinear`: the same module, whose fp32 calls without
gradients (decoding, the frozen teacher, evaluation) run on oneDNN. Calls that need gradients, or
run under autocast, or in another dtype, are unchanged. `OPCT_ONEDNN=1` (or `0`) overrides the rule.
A weight that only ever serves such calls can be held in oneDNN's packed layout (`pack_weight`), as
the OPCT sampling copy holds its merged matrices: a further 1.4x on 8-row products.
"""

from __future__ import annotations

import functools
import os

import torch

from opct.errors import UserError


@functools.lru_cache(maxsize=None)
def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.lru_cache(maxsize=None)
def _onednn_usable() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_is_preferred() -> bool:
    """Whether fp32 CPU linears should run on oneDNN: an AMD CPU with torch's MKL, unless
    `OPCT_ONEDNN=0|1` says otherwise."""
    forced = os.environ.get("OPCT_ONEDNN")
    if forced not in (None, "", "0", "1"):
        raise UserError(f"OPCT_ONEDNN must be 0 or 1, not {forced!r}")
    if not _onednn_usable():
        return False
    if forced:
        return forced == "1"
    return _cpu_vendor() == "AuthenticAMD" and torch.backends.mkl.is_available()


# On that CPU MKL stays faster for 1-2 rows, except in output layers (vocabulary-wide).
MIN_ROWS, WIDE_OUTPUT = 4, 16384


# The row count oneDNN lays a packed weight out for; any count works (measured the same at 1-64).
PACKED_ROWS = 8


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """An fp32 weight in oneDNN's own layout (a copy). On the AVX2 host every SmolLM2 layer once took,
    at 8 rows, 77 ms packed against 108 unpacked and 168 with MKL; at 2 rows 55 against 78 and 81; at
    1 row 48 on all three (benchmarks/README.md, `cpu_linear.py`)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_ROWS)


class OneDNNLinear(torch.nn.Linear):
    """`nn.Linear` whose fp32 CPU calls without gradients run on oneDNN (equal up to fp32 rounding).
    With `packed` set (`pack_weight`), every call uses it and `weight` is not read."""

    packed: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if self.packed is not None:
            if torch.is_grad_enabled() and x.requires_grad:
                raise RuntimeError("OneDNNLinear: a packed weight has no gradient path")
            return torch.ops.mkldnn._linear_pointwise(x.float(), self.packed, b, "none", [], "")
        if (x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
                and (x.numel() >= MIN_ROWS * x.shape[-1] or w.shape[0] >= WIDE_OUTPUT)
                and not torch.is_autocast_enabled("cpu")
                and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)))):
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        return super().forward(x)


def onednn_linears(model, enabled: bool | None = None):
    """Turn `model`'s plain `nn.Linear` layers into `OneDNNLinear` when `enabled` (default:
    `onednn_is_preferred()`); returns `model`. Idempotent; weights, hooks and `isinstance` checks
    (peft's LoRA wrapping) are unaffected."""
    if enabled is None:
        enabled = onednn_is_preferred()
    if enabled:
        for module in model.modules():
            if type(module) is torch.nn.Linear:
                module.__class__ = OneDNNLinear
    return model
