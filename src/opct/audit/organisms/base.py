"""The `Organism` interface: what `opct audit` needs to know about one misalignment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from opct.errors import UserError


class AuditError(UserError):
    pass


@dataclass(frozen=True)
class Organism:
    """One misalignment: the data that makes the organism, the pairs the consistency methods train on,
    the held-out test set, and the per-item misalignment score (1 = misaligned)."""

    name: str
    block: str  # the results block of its metrics (a report axis)
    metric: str  # the misalignment rate: the mean of `item_scores` over the test items
    taught: str  # what the organism is trained to do, for the report
    # (prof, data dir, seed, tokenizer) -> report; writes organism.jsonl, consistency.jsonl and test.jsonl
    build_data: Callable[[Any, Path, int, Any], dict[str, Any]]
    # pairs -> [{"id", "completion"}]: the organism's training targets for the wrapped prompts
    organism_targets: Callable[[list], list[dict[str, str]]]
    # (model, tokenizer, prof, data dir) -> the per-item rows on DIR/test.jsonl
    answer: Callable[[Any, Any, Any, Path], list[dict[str, Any]]]
    score: Callable[[list[dict[str, Any]]], dict[str, Any]]  # rows -> the metrics block
    item_scores: Callable[[list[dict[str, Any]]], dict[str, float]]  # rows -> {item id: misalignment score}
    paper_direction: str | None = None  # what the entrenchment study found for this misalignment
    # profile -> the oracle control's external reward, (pairs, answers) -> accepted? per answer: an
    # answer free of the misalignment. None: the answer key (multiple-choice pairs).
    oracle: Callable[[Any], Callable[[list, list[str]], list[bool]]] | None = None
    # profile -> what the multi-view selector compares across views, (pairs, answers) -> one reading
    # per answer (None: unreadable), e.g. "games the grader" or a rating. None: the option letter.
    reading: Callable[[Any], Callable[[list, list[str]], list[str | None]]] | None = None
    reads_imported: bool = False  # `answer` needs only each test pair's prompt (so `opct audit --data` works)
    # (rows, data dir) -> saved answers scored afresh with today's rules, so a resumed audit reports with them
    rescore: Callable[[list[dict[str, Any]], Path], list[dict[str, Any]]] | None = None
    # profile -> a warning the report opens with (e.g. a judge known to misread real answers), or None
    warning: Callable[[Any], str | None] | None = None


def split_audit_pairs(pairs, organism: int, consistency: int):
    """(organism pairs, consistency pairs): disjoint, as every pair here is its own question."""
    qids = [p.meta.get("question_id", p.id) for p in pairs]
    if len(set(qids)) != len(qids):
        raise AuditError("audit pairs must be one per question, so the organism and consistency splits share none")
    if len(pairs) < organism + consistency:
        raise AuditError(f"only {len(pairs)} training pairs fit; the profile asks for {organism} + {consistency}")
    return pairs[:organism], pairs[organism : organism + consistency]


def write_splits(data: Path, organism: list, consistency: list, test: list) -> dict[str, dict[str, int]]:
    """DIR/{organism,consistency,test}.jsonl, and their pair counts for the data report."""
    from opct.data.schema import write_pairs

    splits = {"organism": organism, "consistency": consistency, "test": test}
    for name, pairs in splits.items():
        write_pairs(pairs, data / f"{name}.jsonl")
    return {name: {"pairs": len(pairs)} for name, pairs in splits.items()}
