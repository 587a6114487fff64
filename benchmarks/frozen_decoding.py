"""Greedy decoding of a frozen fp32 model under bf16 autocast, with and without `weights_cast_once`.

A trained model loaded for evaluation is frozen (peft freezes its base), and autocast caches its
bf16 casts only of weights that require grad, so without `weights_cast_once` every decoding step
casts every weight again. Prints the seconds per call of each arm and their ratio (same tokens).

    .venv/bin/python benchmarks/frozen_decoding.py [--model embedded:smollm2-135m-instruct] [--batch 1,8]
"""

from __future__ import annotations

import argparse
import time

import torch

from opct.chat import left_pad, pad_id, render_prompt
from opct.generation import generate_ids, weights_cast_once
from opct.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    model, tok = load_model(a.model)
    model.requires_grad_(False)  # as evaluation loads a trained model
    topics = ["a cat", "a river", "the moon", "bread", "a lighthouse", "trains", "winter", "a violin"]
    for batch in [int(b) for b in a.batch.split(",")]:
        prompts = [render_prompt(tok, [{"role": "user", "content": f"Tell me a story about {t}."}])
                   for t in (topics * batch)[:batch]]
        ids, mask = left_pad(prompts, pad_id(tok))

        def every_step():  # what generation did before: autocast alone
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), weights_cast_once(model, False):
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=a.new_tokens, do_sample=False,
                                     pad_token_id=pad_id(tok))
            return out[:, ids.shape[1]:].tolist()

        def once():
            return [c.token_ids for c in generate_ids(model, tok, prompts, max_new_tokens=a.new_tokens)]

        seconds = {}
        for name, fn in (("cast every step", every_step), ("cast once", once)):
            times = []
            for _ in range(a.repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            seconds[name] = min(times)
            print(f"batch {batch:2d}  {name:16s} {min(times):6.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})")
        print(f"batch {batch:2d}  speed-up {seconds['cast every step'] / seconds['cast once']:.2f}x")


if __name__ == "__main__":
    main()
