"""Why OPCT does not copy the warn-first teacher's opening: how likely is each model to start its answer
with "Warning"?

OPCT learns only from the student's own samples: the teacher re-weights tokens the student drew. If the
student almost never draws the teacher's opening, one epoch of samples gives the loss little to move
towards it. For a finished `opct demo --axis safety` run this prints, per model, the probability of the
first answer token being "Warning" at the run's OPCT sampling temperature, averaged over prompts:

  - the teacher (the base model on the clean prompt, fact and instruction in the system message) and
    the base on the wrapped prompt, over the training pairs (what OPCT sampled from) and the test pairs;
  - each trained run on the wrapped test prompts;

with, for the training pairs, the expected number of sampled answers opening with it in one epoch
(the sum of the probabilities times the samples per prompt).

    .venv/bin/python benchmarks/safety_first_token.py runs/demo-safety-warnfirst-2seeds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from opct.chat import render_prompt
from opct.data.schema import read_pairs
from opct.models import load_model
from opct.study import trained_runs


@torch.no_grad()
def first_token_prob(model, tokenizer, conversations, token: int, temperature: float) -> list[float]:
    out = []
    for conversation in conversations:
        ids = torch.tensor([render_prompt(tokenizer, conversation)])
        logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()  # no [T, V] head over the prompt
        out.append(torch.softmax(logits / temperature, -1)[token].item())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished `opct demo --axis safety` directory")
    parser.add_argument("--word", default="Warning", help="the opening to look for (its first token; default %(default)s)")
    a = parser.parse_args()
    if not (a.run / "demo_config.json").is_file() or not (a.run / "data" / "test.jsonl").is_file():
        parser.error(f"{a.run}: not an `opct demo` run (no demo_config.json or data/test.jsonl)")
    config = json.loads((a.run / "demo_config.json").read_text())
    opct = config["train"]["opct"]
    temperature, samples = opct.get("temperature", 1.0), opct.get("num_samples", 1)
    train, test = read_pairs(a.run / "data" / "train.jsonl"), read_pairs(a.run / "data" / "test.jsonl")
    model, tokenizer = load_model(config["model"])
    token = tokenizer(a.word, add_special_tokens=False)["input_ids"][0]
    print(f"{a.run}: P(first answer token = {tokenizer.decode([token])!r}) at temperature {temperature}, "
          f"mean [max] over prompts")

    def show(name: str, probs: list[float], split: str, expected: bool = False) -> None:
        extra = f"; expected openings in one epoch of {samples} sample(s) per prompt: {samples * sum(probs):.2f}" \
            if expected else ""
        print(f"  {name:28s} {split:5s} {sum(probs) / len(probs):.4f} [{max(probs):.4f}] (n={len(probs)}){extra}")

    for split, pairs in (("train", train), ("test", test)):
        show("teacher (clean prompt)", first_token_prob(model, tokenizer, [p.clean for p in pairs], token, temperature), split)
        show("base (wrapped prompt)", first_token_prob(model, tokenizer, [p.wrapped for p in pairs], token, temperature),
             split, expected=split == "train")
    del model
    for dirs in trained_runs(a.run).values():
        for run_dir in dirs:
            model, _ = load_model(str(run_dir))
            show(run_dir.name, first_token_prob(model, tokenizer, [p.wrapped for p in test], token, temperature), "test")
            del model
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
