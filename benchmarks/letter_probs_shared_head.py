"""Letter probabilities with the batch's shared first tokens run once, or every prompt whole?

`opct.evals.mcq.letter_probs` reads the option letter's probability after each sycophancy or MMLU
prompt; it is most of a sycophancy evaluation's time. The rows of a batch share their chat template's
system prompt (about a tenth of a sycophancy prompt's tokens), which `opct.prefix.next_token_logits`
now runs once per batch. This times that against one padded batch of whole prompts (the earlier path)
on the clean and wrapped prompts of sycophancy test pairs, checks that they agree, and prints the
throughput ratio. The two alternate, so a drifting machine load falls on both.

    .venv/bin/python benchmarks/letter_probs_shared_head.py [--models embedded:qwen2.5-coder-1.5b-instruct] [--pairs 32]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    import opct.evals.mcq as mcq
    from opct.chat import render_prompt
    from opct.data.sycophancy import build_split
    from opct.models import load_model
    from opct.prefix import common_head_length, next_token_logits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="embedded:qwen2.5-coder-1.5b-instruct,embedded:smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=32, help="sycophancy test pairs (mixed source): twice as many prompts")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per path, alternating")
    args = ap.parse_args()
    pairs, _ = build_split("test", limit=args.pairs, seed=0, source="mixed")
    convs = [p.clean for p in pairs] + [p.wrapped for p in pairs]
    whole = functools.partial(next_token_logits, min_shared=10**9)  # never shares: one padded batch
    for spec in args.models.split(","):
        model, tok = load_model(spec)
        model.requires_grad_(False)
        seqs = sorted((render_prompt(tok, c) for c in convs), key=len)
        shared = sum(common_head_length(seqs[i:i + 8]) * (len(seqs[i:i + 8]) - 1) for i in range(0, len(seqs), 8))
        print(f"{spec}  {len(convs)} prompts, {sum(map(len, seqs))} tokens, {shared} of them run once instead "
              f"({shared / sum(map(len, seqs)):.1%}; batches of 8 by length)", flush=True)
        times: dict[str, list[float]] = {"whole prompts": [], "shared head": []}
        probs = {}
        for _ in range(args.repeats):
            for name, fn in (("whole prompts", whole), ("shared head", next_token_logits)):
                mcq.next_token_logits = fn
                start = time.perf_counter()
                probs[name] = mcq.letter_probs(model, tok, convs)
                times[name].append(time.perf_counter() - start)
        mcq.next_token_logits = next_token_logits
        seconds = {name: statistics.median(t) for name, t in times.items()}
        for name, s in seconds.items():
            print(f"{spec}  {name:<13} {s:.1f} s for {len(convs)} prompts (median of {args.repeats}: "
                  + ", ".join(f"{t:.1f}" for t in times[name]) + ")", flush=True)
        a, b = probs.values()
        flips = int((a.argmax(-1) != b.argmax(-1)).sum())
        print(f"{spec}  largest letter-probability difference {float((a - b).abs().max()):.4f}; "
              f"argmax letters differing: {flips} of {len(convs)}")
        print(f"{spec}  shared head / whole prompts throughput ratio: "
              f"{seconds['whole prompts'] / seconds['shared head']:.2f}", flush=True)


if __name__ == "__main__":
    main()
