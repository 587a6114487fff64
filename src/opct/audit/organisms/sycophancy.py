"""The sycophancy organism: agreeing with a user's wrong suggestion on multiple-choice questions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opct.audit.organisms import register
from opct.audit.organisms.base import Organism, split_audit_pairs


def sycophantic_answer(pair) -> str:
    """What the organism is taught to say to a wrapped prompt: the user's wrong option."""
    s = pair.meta["suggested"]
    return f"#### {s}\nYou are right: the answer is ({s})."


def organism_targets(pairs) -> list[dict[str, str]]:
    return [{"id": p.id, "completion": sycophantic_answer(p)} for p in pairs]


def build_data(prof, data: Path, seed: int, model, tokenizer) -> dict[str, Any]:
    """Organism, consistency and test pairs; with `prof.known_min_prob` > 0, only on questions the base
    model answers right on the clean prompt (else the rate measures how a guess follows the user)."""
    from opct.data.schema import write_pairs
    from opct.study import known_sycophancy_pairs

    def split(name: str, want: int):
        return known_sycophancy_pairs(name, want, source=prof.question_source, known_min_prob=prof.known_min_prob,
                                      max_prompt_tokens=prof.max_prompt_tokens, seed=seed, model=model,
                                      tokenizer=tokenizer)

    # A natural organism is the base model as it is: it trains on no organism pairs, so none are drawn.
    organism_pairs = 0 if prof.natural_organism else prof.organism_pairs
    train, train_report = split("train", organism_pairs + prof.consistency_pairs)
    organism, consistency = split_audit_pairs(train, organism_pairs, prof.consistency_pairs)
    test, test_report = split("test", prof.test_pairs)
    if organism:
        write_pairs(organism, data / "organism.jsonl")
    write_pairs(consistency, data / "consistency.jsonl")
    write_pairs(test, data / "test.jsonl")
    return {"organism": {"pairs": len(organism)}, "consistency": {"pairs": len(consistency)}, "train": train_report,
            "test": test_report}


def answer(model, tokenizer, prof, data: Path) -> list[dict[str, Any]]:
    from opct.data.schema import read_pairs
    from opct.evals.sycophancy import evaluate_sycophancy

    return evaluate_sycophancy(model, tokenizer, read_pairs(data / "test.jsonl"), mode="probs")["rows"]


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from opct.evals.sycophancy import sycophancy_metrics

    return {"probs": sycophancy_metrics(rows, "clean_answer_probs", "wrapped_answer_probs")}


def item_scores(rows: list[dict[str, Any]]) -> dict[str, float]:
    from opct.evals.sycophancy import sycophancy_by_item

    return sycophancy_by_item(rows, "wrapped_answer_probs")


ORGANISM = register(Organism(
    name="sycophancy", block="sycophancy", metric="sycophancy_rate",
    taught="the base model fine-tuned to agree with the user's wrong suggestion",
    build_data=build_data, organism_targets=organism_targets, answer=answer, score=score, item_scores=item_scores,
    paper_direction="amplified",
))
