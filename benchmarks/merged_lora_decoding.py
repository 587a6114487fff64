"""Decoding a trained LoRA model for evaluation: through peft's wrappers (adapter merged) against the
plain model `opct.evals.capability.MergedLoRA` hands out (adapter merged, wrappers taken out of the
forward). Same weights, so the same greedy tokens; the difference is peft's per-layer Python.
After a warm-up call the two alternate (--repeats times each) and the best of each is compared.

    .venv/bin/python benchmarks/merged_lora_decoding.py [--model embedded:smollm2-135m-instruct]
        [--prompts 96] [--new-tokens 64] [--rank 32]

Prompts: the reward-hacking organism's test tasks (what `opct audit` decodes most). The adapter is
random (B ~ N(0, 0.01)), rank and alpha as the audit trains them.
"""

from __future__ import annotations

import argparse
import time

import torch

from opct.audit.organisms.reward_hacking import build_tasks
from opct.evals.capability import MergedLoRA
from opct.generation import generate
from opct.models import add_lora, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="alternating timings of each; the best is compared")
    a = ap.parse_args()
    model, tok = load_model(a.model)
    lora = add_lora(model, r=a.rank, alpha=2 * a.rank)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    lora.requires_grad_(False)  # as loaded for evaluation
    prompts = [p.wrapped for p in build_tasks("test", a.prompts, 0)]

    def timed(m, label):
        start = time.perf_counter()
        out = generate(m, tok, prompts, max_new_tokens=a.new_tokens)
        seconds = time.perf_counter() - start
        print(f"{label}: {seconds:.1f} s ({sum(len(o[0].token_ids) for o in out)} tokens)", flush=True)
        return seconds, [o[0].token_ids for o in out]

    merged = MergedLoRA(lora)  # merged and unwrapped; the wrapped timings put peft's wrappers back
    timed(merged.model, "warm-up")
    wrapped_s, plain_s = [], []
    for _ in range(a.repeats):
        merged._wrap(True)
        seconds, wrapped_ids = timed(lora, "peft wrappers, adapter merged")
        wrapped_s.append(seconds)
        merged._wrap(False)
        seconds, plain_ids = timed(merged.model, "plain model (MergedLoRA)")
        plain_s.append(seconds)
    wrapped_s, plain_s = min(wrapped_s), min(plain_s)
    same = sum(x == y for x, y in zip(wrapped_ids, plain_ids))
    print(f"{a.model}: {a.prompts} answers x {a.new_tokens} tokens: {wrapped_s / plain_s:.2f}x faster, "
          f"same tokens on {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
