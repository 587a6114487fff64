"""The OPCT step's wrapped-prompt forward and backward: one padded batch against prompts grouped by length.

OPCT runs the wrapped prompts of a step once, with gradients through the LoRA adapter
(`opct.prefix.student_heads`). Training draws its pairs at random, so a step's four prompts differ
in length and a single left-padded batch computes padding. `opct.prefix.head_kv` runs prompts of
similar length together (`opct.prefix.length_groups`) and stacks their KV; smaller groups mean
smaller matmuls, which run below the large ones' speed on a CPU. Both are timed here on the same
random batches of sycophancy training pairs, in one run, in turns:

  padded   `opct.prefix.padded_head_kv`: one left-padded batch
  grouped  `opct.prefix.head_kv`: groups of similar length (opct's default)

Each batch's heads run forward with gradients and then backward from a loss over every layer's
keys and values, under the precision opct trains in on this host (`opct.precision`). Prints the
padding share of the batches, each side's seconds per batch (best of `--repeats` passes) and the
speed-up.

    .venv/bin/python benchmarks/prompt_grouping.py [--model embedded:smollm2-135m-instruct]
        [--batch-size 4] [--batches 6] [--repeats 2] [--pairs FILE] [--attention eager|sdpa]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from opct.chat import pad_id, render_prompt
from opct.generation import autocast_context
from opct.models import add_lora, attention_kernel, load_model
from opct.precision import bf16_is_fast
from opct.prefix import head_kv, padded_head_kv


def seconds_per_batch(run, model, batches, pad: int, bf16: bool, attention: str) -> float:
    start = time.perf_counter()
    for heads in batches:
        with attention_kernel(model, attention), autocast_context("cpu", bf16):
            kv, _ = run(model, heads, pad)
            loss = sum(keys.float().square().mean() + values.float().square().mean() for keys, values in kv)
        loss.backward()
        model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--batch-size", type=int, default=4, help="prompts per step (the demos' 4)")
    ap.add_argument("--batches", type=int, default=6, help="random batches timed per pass")
    ap.add_argument("--repeats", type=int, default=2, help="passes per side, in turns; the best counts")
    ap.add_argument("--pairs", help="a pairs JSONL file (default: the sycophancy training split)")
    ap.add_argument("--attention", default="eager", choices=["eager", "sdpa"],
                    help="the attention kernel (OPCT's train_attention=auto picks eager at these sizes)")
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args(argv)

    model, tok = load_model(opts.model)
    model = add_lora(model)  # opct's defaults: r 32, alpha 64, every linear layer
    model.train()
    if opts.pairs:
        from opct.data.schema import read_pairs

        pairs = read_pairs(opts.pairs)
    else:
        from opct.data.sycophancy import build_split

        pairs, _ = build_split("train", limit=128)
    prompts = [render_prompt(tok, p.wrapped) for p in pairs]
    rng = random.Random(opts.seed)
    batches = [[p[:-1] for p in rng.sample(prompts, opts.batch_size)] for _ in range(opts.batches)]
    real = sum(len(h) for heads in batches for h in heads)
    padded = sum(len(heads) * max(map(len, heads)) for heads in batches)
    bf16 = bf16_is_fast("cpu")
    print(f"{opts.model}: {len(pairs)} pairs, {opts.batches} random batches of {opts.batch_size} wrapped prompts, "
          f"{real / len(batches) / opts.batch_size:.0f} tokens mean, padding {1 - real / padded:.1%} of one padded "
          f"batch; {'bf16 autocast' if bf16 else 'fp32'}, {opts.attention} attention, {torch.get_num_threads()} threads")
    sides = {"padded": padded_head_kv, "grouped": head_kv}
    best = {name: float("inf") for name in sides}
    seconds_per_batch(head_kv, model, batches[:1], pad_id(tok), bf16, opts.attention)  # warm-up
    for _ in range(opts.repeats):
        for name, run in sides.items():
            best[name] = min(best[name], seconds_per_batch(run, model, batches, pad_id(tok), bf16, opts.attention))
    for name, seconds in best.items():
        print(f"{name:<8} {seconds:7.2f} s per batch (forward + backward, best of {opts.repeats})")
    print(f"grouped/padded speed-up: {best['padded'] / best['grouped']:.2f}x")


if __name__ == "__main__":
    main()
