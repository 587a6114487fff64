"""Importers from published pair data into `ContrastivePair`s.

`import_chua` reads the BCT data dumps of Chua et al. (2024), "Bias-Augmented Consistency
Training Reduces Biased Reasoning in Chain-of-Thought": one JSON object per line with
``unbiased_question`` and ``biased_question`` (chat-message lists, possibly serialised as a
JSON string), ``ground_truth`` (a letter), ``biased_option`` (a letter, or ``NOT X`` for the
"are you sure" bias), ``bias_name`` and ``original_dataset``. Every row becomes a pair or a
listed skip (line number and reason); blank lines are not rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from opct.data.schema import ContrastivePair, PairFormatError, validate_messages, write_pairs

AXIS = "sycophancy"
CHUA_FIELDS = (
    "unbiased_question",
    "biased_question",
    "ground_truth",
    "biased_option",
    "bias_name",
    "original_dataset",
)

# Role spellings seen in chat dumps, mapped to the schema's roles (compared case-insensitively).
ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "assistant_if_completion": "assistant",
    "system": "system",
}

_NOT_RE = re.compile(r"^NOT\s+\(?([A-J])\)?$", re.IGNORECASE)
_LETTER_RE = re.compile(r"^\(?([A-J])\)?$", re.IGNORECASE)


class _RowError(Exception):
    """One row's reason for being skipped."""


def _messages(row: dict[str, Any], key: str) -> list[dict[str, str]]:
    value = row[key]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise _RowError(f"field '{key}': a string that is not a JSON message list ({e.msg})") from None
    if not isinstance(value, list):
        raise _RowError(f"field '{key}': expected a list of chat messages, got {type(value).__name__}")
    if not value:
        raise _RowError(f"field '{key}': empty message list")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise _RowError(f"field '{key}[{i}]': expected an object with 'role' and 'content'")
        role = m["role"]
        mapped = ROLE_ALIASES.get(role.strip().lower()) if isinstance(role, str) else None
        if mapped is None:
            raise _RowError(f"field '{key}[{i}].role': unknown role {role!r}")
        out.append({"role": mapped, "content": m["content"]})
    problems = validate_messages(out, key)
    if problems:
        raise _RowError("; ".join(problems))
    return out


def _letter(row: dict[str, Any], key: str) -> str:
    v = row[key]
    m = _LETTER_RE.match(v.strip()) if isinstance(v, str) else None
    if not m:
        raise _RowError(f"field '{key}': expected a letter A-J, got {v!r}")
    return m.group(1).upper()


def _text(row: dict[str, Any], key: str) -> str:
    v = row[key]
    if not isinstance(v, str) or not v.strip():
        raise _RowError(f"field '{key}': expected a non-empty string")
    return v.strip()


def _pair_from_row(row: Any, lineno: int, keep_matching: bool) -> ContrastivePair:
    if not isinstance(row, dict):
        raise _RowError(f"expected a JSON object, got {type(row).__name__}")
    missing = [k for k in CHUA_FIELDS if k not in row or row[k] is None]
    if missing:
        raise _RowError("missing field(s): " + ", ".join(f"'{k}'" for k in missing))
    clean = _messages(row, "unbiased_question")
    wrapped = _messages(row, "biased_question")
    truth = _letter(row, "ground_truth")
    bias_name = _text(row, "bias_name")
    dataset = _text(row, "original_dataset")
    option = row["biased_option"]
    suggested, against = None, None
    if isinstance(option, str) and _NOT_RE.match(option.strip()):
        against = _NOT_RE.match(option.strip()).group(1).upper()
    else:
        if not (isinstance(option, str) and _LETTER_RE.match(option.strip())):
            raise _RowError(f"field 'biased_option': expected a letter A-J or 'NOT X', got {option!r}")
        suggested = _letter(row, "biased_option")
        if suggested == truth and not keep_matching:
            raise _RowError(
                f"field 'biased_option': equals ground_truth ({truth}), so the bias is not towards a wrong answer"
            )
    # Id from the content, so the same question under two biases (or two files) stays distinct.
    key = json.dumps([clean, wrapped, truth, option, bias_name], ensure_ascii=False, sort_keys=True)
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    meta: dict[str, Any] = {
        "template_id": bias_name,
        "family": bias_name,
        "suggested": suggested,
        "correct": truth,
        "original_dataset": dataset,
        "source": "chua2024",
        "line": lineno,
    }
    if against is not None:
        meta["against"] = against
    if isinstance(row.get("original_question_hash"), str):
        meta["question_id"] = row["original_question_hash"]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", bias_name)
    return ContrastivePair(
        id=f"chua-{slug}-{digest}", axis=AXIS, clean=clean, wrapped=wrapped, target=truth, meta=meta
    )


def import_chua(
    path: str | Path, keep_matching: bool = False
) -> tuple[list[ContrastivePair], list[tuple[int, str]]]:
    """Pairs from a Chua et al. (2024) dump, and the skipped rows as (line number, reason).

    Rows whose biased_option equals the ground truth are skipped (the bias would push towards
    the right answer) unless `keep_matching`. Exact repeats of an earlier row are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise PairFormatError(f"{path}: no such file")
    pairs: list[ContrastivePair] = []
    skipped: list[tuple[int, str]] = []
    first: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                skipped.append((lineno, f"malformed JSON ({e.msg} at column {e.colno})"))
                continue
            try:
                pair = _pair_from_row(row, lineno, keep_matching)
            except _RowError as e:
                skipped.append((lineno, str(e)))
                continue
            if pair.id in first:
                skipped.append((lineno, f"duplicate of line {first[pair.id]}"))
                continue
            first[pair.id] = lineno
            pairs.append(pair)
    return pairs, skipped


def export_chua(path: str | Path, out: str | Path, keep_matching: bool = False) -> dict[str, Any]:
    """`import_chua(path)` written to `out` as JSONL; returns a report (counts, per bias, skips)."""
    pairs, skipped = import_chua(path, keep_matching)
    if not pairs:
        raise PairFormatError(f"{path}: no usable rows ({len(skipped)} skipped)" + "".join(
            f"\n  line {n}: {r}" for n, r in skipped[:20]
        ))
    write_pairs(pairs, out)
    return {
        "source": str(path),
        "out": str(out),
        "pairs": len(pairs),
        "per_family": dict(sorted(Counter(p.meta["family"] for p in pairs).items())),
        "skipped": len(skipped),
        "skipped_items": [{"line": n, "reason": r} for n, r in skipped],
    }
