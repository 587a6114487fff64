"""Greedy answers to prompts of mixed lengths: opct's generation against transformers' own `generate`.

The prompts are the wrapper search's first round in the jailbreak eval: `--behaviours` held-out
behaviours, each in `--per` wrappers of opct's library (60 to 800 tokens with PyRIT's templates).
Both sides see the same batches (the prompts sorted by length, `--batch` per call, as
`opct.generation.generate` cuts them), under the same bf16 autocast with frozen weights cast once:

  transformers  one left-padded batch per call into `model.generate` (its DynamicCache)
  opct          `opct.generation.generate`: the prompts of similar length prefilled together
                (`opct.prefix.head_kv`), then decoded into a static cache written in place
                (`opct.prefix.decoding_cache`)

Prints each side's best time over `--repeats`, the tokens, the rows whose answers differ (greedy
decoding in bf16 flips near-ties when the batch layout changes) and the speed-up.

    .venv/bin/python benchmarks/prefill_by_length.py [--model embedded:smollm2-135m-instruct]
        [--behaviours 12] [--per 4] [--new-tokens 48] [--batch 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from opct.attacks import default_library
from opct.attacks.search import WrapperSearch
from opct.chat import left_pad, pad_id, render_prompt
from opct.data.jailbreak import load_behaviors, split_behaviors
from opct.evals.target import target_conversation
from opct.generation import autocast_context, eos_ids, generate, trim_completion, weights_cast_once
from opct.models import load_model


def transformers_answers(model, tok, prompts: list[list[int]], batch: int, new_tokens: int) -> list[list[int]]:
    eos, out = eos_ids(tok, model), []
    with torch.no_grad(), autocast_context("cpu", True), weights_cast_once(model, True):
        for start in range(0, len(prompts), batch):
            ids, mask = left_pad(prompts[start : start + batch], pad_id(tok))
            rows = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                  temperature=None, top_p=None, top_k=None, pad_token_id=pad_id(tok), eos_token_id=eos)
            out += [trim_completion(r[ids.shape[1]:].tolist(), eos)[0] for r in rows]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--behaviours", type=int, default=12)
    ap.add_argument("--per", type=int, default=4, help="wrappers per behaviour")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=32, help="rows per generate call (opct.defaults.DECODE_BATCH)")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    _, heldout = split_behaviors(load_behaviors(skip_missing=True), seed=0)
    behaviours = random.Random(0).sample(heldout, a.behaviours)
    library = default_library()
    texts = [w.render(b.prompt) for b in behaviours
             for w in WrapperSearch(library, random.Random(f"0:{b.id}")).propose(a.per)]
    model, tok = load_model(a.model)
    model.requires_grad_(False)
    convs = [target_conversation(t) for t in texts]
    order = sorted(range(len(convs)), key=lambda i: len(render_prompt(tok, convs[i])))
    convs = [convs[i] for i in order]  # by length, so both sides cut the same batches
    rendered = [render_prompt(tok, c) for c in convs]
    lengths = [len(r) for r in rendered]
    print(f"{a.model}: {len(rendered)} prompts of {lengths[0]}-{lengths[-1]} tokens (mean {sum(lengths) / len(lengths):.0f}), "
          f"{a.batch} per call, {a.new_tokens} new tokens, best of {a.repeats}", flush=True)
    seconds, answers = {}, {}
    for name in ("transformers", "opct"):
        for _ in range(a.repeats):
            start = time.perf_counter()
            if name == "transformers":
                got = transformers_answers(model, tok, rendered, a.batch, a.new_tokens)
            else:
                got = [o[0].token_ids for o in generate(model, tok, convs, max_new_tokens=a.new_tokens,
                                                        batch_size=a.batch)]
            took = time.perf_counter() - start
            seconds[name] = min(seconds.get(name, took), took)
            answers[name] = got
        print(f"  {name:<12} {seconds[name]:6.1f} s  {sum(map(len, answers[name]))} tokens", flush=True)
    differ = sum(x != y for x, y in zip(answers["transformers"], answers["opct"]))
    print(f"  answers that differ: {differ} of {len(rendered)}")
    print(f"opct/transformers speed-up: {seconds['transformers'] / seconds['opct']:.2f}x")


if __name__ == "__main__":
    main()
