import json
from importlib import resources

import pytest

from opct.data.instructions import KINDS, instruction_pairs, instruction_prompts


def test_instruction_prompts_are_apart_from_every_eval_set():
    prompts = instruction_prompts()
    assert len(prompts) == len(set(prompts)) >= 200
    evals = set()
    for name in ("benign_lookalikes.jsonl", "neutral_prompts.jsonl"):
        text = resources.files("opct.resources").joinpath(name).read_text(encoding="utf-8")
        evals |= {json.loads(line)["prompt"] for line in text.splitlines() if line.strip()}
    assert not set(prompts) & evals
    assert instruction_prompts(10, seed=1) == instruction_prompts(10, seed=1) != instruction_prompts(10, seed=2)
    assert instruction_prompts(4, kinds=("ordinary",)) == instruction_prompts(4, kinds=("ordinary",))
    with pytest.raises(ValueError, match="unknown instruction kinds"):
        instruction_prompts(3, kinds=("nope",))


def test_instruction_pairs_ask_the_same_thing_twice():
    pairs = instruction_pairs(5, seed=0, kinds=KINDS)
    assert len(pairs) == 5 and all(p.clean == p.wrapped and p.meta["family"] == "instruction_mix" for p in pairs)
