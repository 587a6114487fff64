"""Import the per-task JSONL files of the UK AISI consistency-misalignment release.

Layout read (`consistency_em/data/<task>/files/`, one chat row per line, ``messages`` plus task
fields such as ``label`` or ``answer``):

- ``induction.jsonl``: the organism's training rows (a prompt and the misaligned assistant answer);
- ``act_bct_clean.jsonl`` and ``act_bct_wrapped.jsonl``: the consistency pairs, line by line (same
  row count; the assistant turn, when present, is the clean answer);
- ``consistency.jsonl``: prompts for the self-training methods (optional);
- ``eval.jsonl``: the held-out test prompts (task fields kept in ``meta``).

Each task becomes opct pair files in OUT/<task>/: ``organism.jsonl`` (wrapped = clean = the prompt,
target = the misaligned answer), ``consistency.jsonl`` (the act/bct pairs), ``selftrain.jsonl``
and ``test.jsonl`` (wrapped = clean = the prompt), the same split names `opct audit` uses. Rows
that cannot be read are skipped and listed (file, line, field, reason); a message without a role
takes the alternating user/assistant role of its position (the spurious-correlation eval file has
none), and the count is reported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from opct.data.jsonl import read_jsonl
from opct.data.schema import ContrastivePair, PairFormatError, validate_messages, write_pairs

PAIR_FILES = ("act_bct_clean.jsonl", "act_bct_wrapped.jsonl")
SPLIT_FILES = {"organism": "induction.jsonl", "selftrain": "consistency.jsonl", "test": "eval.jsonl"}
KNOWN_FILES = {*PAIR_FILES, *SPLIT_FILES.values(), "rubric.txt"}


class _RowError(Exception):
    """One row's reason for being skipped."""


def find_tasks(root: str | Path) -> dict[str, Path]:
    """{task: its files/ directory} under `root`: the release's data directory (<task>/files/), one
    task directory (files/ inside it), or one files/ directory."""
    root = Path(root)
    if not root.is_dir():
        raise PairFormatError(f"{root}: no such directory")

    def holds_task(d: Path) -> bool:
        return any((d / name).is_file() for name in (*PAIR_FILES, *SPLIT_FILES.values()))

    if holds_task(root):
        return {(root.parent.name if root.name == "files" else root.name): root}
    if holds_task(root / "files"):
        return {root.name: root / "files"}
    tasks = {d.name: d / "files" for d in sorted(root.iterdir()) if d.is_dir() and holds_task(d / "files")}
    if not tasks:
        raise PairFormatError(
            f"{root}: no AISI task found; expected {root}/<task>/files/ holding "
            + ", ".join(sorted(KNOWN_FILES - {'rubric.txt'})) + " (the release's consistency_em/data directory)")
    return tasks


def _rows(path: Path, skipped: list[str]) -> list[tuple[int, dict[str, Any]]]:
    return read_jsonl(path, error=PairFormatError, skipped=skipped)


def _chat(row: dict[str, Any], counts: dict[str, int]) -> tuple[list[dict[str, str]], str | None]:
    """(the prompt's messages, the final assistant answer or None) of one row's ``messages``."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _RowError("field 'messages': expected a non-empty list of chat messages")
    chat = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise _RowError(f"field 'messages[{i}]': expected an object with a string 'content'")
        role = m.get("role")
        if role is None:  # position decides: user, assistant, user, ... (after an optional system turn)
            first_turn = 1 if chat and chat[0]["role"] == "system" else 0
            role = "user" if (i - first_turn) % 2 == 0 else "assistant"
            counts["roles_inferred"] = counts.get("roles_inferred", 0) + 1
        chat.append({"role": role, "content": m["content"]})
    answer = chat.pop()["content"] if chat[-1]["role"] == "assistant" else None
    if not chat:
        raise _RowError("field 'messages': only an assistant turn, no prompt")
    problems = validate_messages(chat, "messages")
    if problems:
        raise _RowError("; ".join(problems))
    return chat, answer


def _meta(row: dict[str, Any], task: str, source: str, lineno: int) -> dict[str, Any]:
    return {**{k: v for k, v in row.items() if k != "messages"}, "source": f"aisi/{task}/{source}", "line": lineno}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def import_task(task: str, files: Path) -> tuple[dict[str, list[ContrastivePair]], list[str], dict[str, Any]]:
    """({split: pairs}, skipped-row lines, counts) for one task's files/ directory."""
    skipped: list[str] = []
    counts: dict[str, Any] = {}
    splits: dict[str, list[ContrastivePair]] = {}
    for split, name in SPLIT_FILES.items():
        path = files / name
        if not path.is_file():
            continue
        pairs = []
        for lineno, row in _rows(path, skipped):
            try:
                chat, answer = _chat(row, counts)
                if split == "organism" and answer is None:
                    raise _RowError("field 'messages': the organism rows need the misaligned assistant answer last")
            except _RowError as e:
                skipped.append(f"{path}:{lineno}: {e}")
                continue
            pairs.append(ContrastivePair(id=f"aisi-{_slug(task)}-{split}-{lineno}", axis=task, clean=chat,
                                         wrapped=chat, target=answer, meta=_meta(row, task, name, lineno)))
        splits[split] = pairs
    clean_path, wrapped_path = (files / n for n in PAIR_FILES)
    if clean_path.is_file() != wrapped_path.is_file():
        have, miss = (clean_path, wrapped_path) if clean_path.is_file() else (wrapped_path, clean_path)
        raise PairFormatError(f"{have} has no partner: {miss} is missing (the two files pair line by line)")
    if clean_path.is_file():
        lines = [sum(1 for x in p.read_text(encoding="utf-8").splitlines() if x.strip()) for p in (clean_path, wrapped_path)]
        if lines[0] != lines[1]:
            raise PairFormatError(f"{clean_path} has {lines[0]} rows and {wrapped_path} {lines[1]}; "
                                  "the two files pair line by line")
        clean_rows, wrapped_rows = dict(_rows(clean_path, skipped)), dict(_rows(wrapped_path, skipped))
        pairs = []
        for line in sorted(clean_rows.keys() & wrapped_rows.keys()):  # a line unreadable in either is listed above
            try:
                clean, answer = _chat(clean_rows[line], counts)
                wrapped, _ = _chat(wrapped_rows[line], counts)
            except _RowError as e:
                skipped.append(f"{clean_path}:{line} / {wrapped_path.name}:{line}: {e}")
                continue
            pairs.append(ContrastivePair(id=f"aisi-{_slug(task)}-pair-{line}", axis=task, clean=clean,
                                         wrapped=wrapped, target=answer, meta=_meta(clean_rows[line], task, PAIR_FILES[0], line)))
        splits["consistency"] = pairs
    counts.update({split: len(p) for split, p in splits.items()})
    counts["ignored_files"] = sorted(p.name for p in files.iterdir() if p.is_file() and p.name not in KNOWN_FILES)
    return splits, skipped, counts


def import_aisi(root: str | Path, out: str | Path) -> dict[str, Any]:
    """Every task under `root` written to OUT/<task>/<split>.jsonl; returns {task: counts and skips}."""
    report = {}
    for task, files in find_tasks(root).items():
        splits, skipped, counts = import_task(task, files)
        if not any(splits.values()):
            raise PairFormatError(f"{files}: no usable rows ({len(skipped)} skipped)"
                                  + "".join(f"\n  {s}" for s in skipped[:10]))
        for split, pairs in splits.items():
            if pairs:
                write_pairs(pairs, Path(out) / task / f"{split}.jsonl")
        report[task] = {**counts, "skipped": len(skipped), "skipped_rows": skipped}
        if (files / "rubric.txt").is_file():
            target = Path(out) / task / "rubric.txt"
            target.write_text((files / "rubric.txt").read_text(encoding="utf-8"), encoding="utf-8")
    return report
