"""Rows per `generate` call: how long N greedy answers take at each batch size (opct.defaults.DECODE_BATCH
is the evaluations' default). The model is frozen, as a trained model is when evaluated.

    .venv/bin/python benchmarks/decode_batch.py [--model embedded:smollm2-135m-instruct] [--prompts 96]
        [--new-tokens 64] [--batches 8,16,32,48]
"""

from __future__ import annotations

import argparse
import time

from opct.generation import generate
from opct.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="8,16,32,48", help="comma-separated rows per generate call")
    a = ap.parse_args()
    model, tok = load_model(a.model)
    model.requires_grad_(False)
    prompts = [[{"role": "user", "content": f"Write a short note about topic number {i}, which concerns gardening "
                                            "and tools."}] for i in range(a.prompts)]
    seconds = {}
    for bs in (int(b) for b in a.batches.split(",")):
        t = time.perf_counter()
        out = generate(model, tok, prompts, max_new_tokens=a.new_tokens, batch_size=bs)
        seconds[bs] = time.perf_counter() - t
        tokens = sum(len(o[0].token_ids) for o in out)
        print(f"{a.model}: {a.prompts} answers at {bs} rows per call: {seconds[bs]:.1f} s ({tokens} tokens)", flush=True)
    first = next(iter(seconds))
    print("speed-up over", first, "rows:", ", ".join(f"{bs}: {seconds[first] / s:.2f}x" for bs, s in seconds.items()))


if __name__ == "__main__":
    main()
