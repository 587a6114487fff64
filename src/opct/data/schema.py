"""The `ContrastivePair` record and its JSONL / `datasets.Dataset` forms.

A pair is one request in two forms: ``clean`` (no cue, or a helpful cue such as a safety
fact) and ``wrapped`` (with the irrelevant or adversarial cue). Both are full chat-message
lists ending with a user turn: the point where the model answers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable
from opct.errors import UserError

ROLES = ("system", "user", "assistant")


class PairFormatError(UserError):
    """Bad contrastive-pair input; the message names the file, line and field."""


@dataclass
class ContrastivePair:
    id: str
    axis: str
    clean: list[dict[str, str]]
    wrapped: list[dict[str, str]]
    target: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = validate_pair_dict(asdict(self))
        if problems:
            raise PairFormatError(f"pair {self.id!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "ContrastivePair":
        problems = validate_pair_dict(row)
        if problems:
            raise PairFormatError("; ".join(problems))
        return cls(
            id=str(row["id"]),
            axis=str(row["axis"]),
            clean=[{"role": m["role"], "content": m["content"]} for m in row["clean"]],
            wrapped=[{"role": m["role"], "content": m["content"]} for m in row["wrapped"]],
            target=row.get("target"),
            meta=dict(row.get("meta") or {}),
        )


def validate_messages(messages: Any, name: str) -> list[str]:
    """Problems with one chat-message list, each naming the field; empty when it is fine."""
    if not isinstance(messages, list):
        return [f"field '{name}': expected a list of chat messages, got {type(messages).__name__}"]
    if not messages:
        return [f"field '{name}': empty message list"]
    problems = []
    for i, m in enumerate(messages):
        where = f"field '{name}[{i}]'"
        if not isinstance(m, dict):
            problems.append(f"{where}: expected an object with 'role' and 'content'")
            continue
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            problems.append(f"{where}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        elif role == "system" and i != 0:
            problems.append(f"{where}.role: a system message may only come first")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"{where}.content: expected a non-empty string")
    if isinstance(messages[-1], dict) and messages[-1].get("role") != "user":
        problems.append(f"field '{name}': the last message must be the user's turn (the model answers it)")
    return problems


def validate_pair_dict(row: Any) -> list[str]:
    if not isinstance(row, dict):
        return [f"expected a JSON object, got {type(row).__name__}"]
    problems = []
    for key in ("id", "axis"):
        if key not in row or row[key] in (None, ""):
            problems.append(f"field '{key}': missing")
    for key in ("clean", "wrapped"):
        if key not in row:
            problems.append(f"field '{key}': missing")
        else:
            problems.extend(validate_messages(row[key], key))
    if row.get("target") is not None and not isinstance(row["target"], str):
        problems.append("field 'target': expected a string or null")
    if row.get("meta") is not None and not isinstance(row["meta"], dict):
        problems.append("field 'meta': expected an object")
    return problems


def read_pairs(path: str | Path) -> list[ContrastivePair]:
    """Read a JSONL file of pairs. Every bad line is reported (file:line: field: problem); none is skipped."""
    from opct.data.jsonl import read_jsonl

    rows = read_jsonl(path, validate_pair_dict, error=PairFormatError, unique="id", what="pairs")
    return [ContrastivePair.from_dict(row) for _, row in rows]


def write_pairs(pairs: Iterable[ContrastivePair], path: str | Path) -> int:
    """Write pairs as JSONL, atomically (a temporary file renamed into place). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for p in pairs:
                f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
                n += 1
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def pairs_to_dataset(pairs: Iterable[ContrastivePair]):
    """A `datasets.Dataset` with columns id, axis, clean, wrapped, target, meta (meta as a JSON string,
    since Arrow needs one schema for every row)."""
    from datasets import Dataset

    rows = [p.to_dict() for p in pairs]
    for r in rows:
        r["meta"] = json.dumps(r["meta"], ensure_ascii=False)
    return Dataset.from_list(rows)


def pair_from_row(row: dict[str, Any]) -> ContrastivePair:
    """Inverse of `pairs_to_dataset` for one row (meta may be a JSON string or a dict)."""
    row = dict(row)
    if isinstance(row.get("meta"), str):
        row["meta"] = json.loads(row["meta"]) if row["meta"] else {}
    return ContrastivePair.from_dict(row)


def dataset_to_pairs(dataset) -> list[ContrastivePair]:
    return [pair_from_row(r) for r in dataset]
