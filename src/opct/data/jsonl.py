"""Reading JSONL input files with errors that name the file and line of every bad row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from opct.errors import UserError


def read_jsonl(
    path: str | Path,
    check: Callable[[dict[str, Any]], list[str]] = lambda row: [],
    *,
    error: type[Exception] = UserError,
    name: str | None = None,
    unique: str | None = None,
    what: str = "rows",
    skipped: list[str] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for each JSON object in `path` (a Path or an importlib Traversable).

    Blank lines are skipped. Malformed JSON, a non-object, each problem `check(row)` returns
    ("field 'x': expected ...") and a repeated `unique` key are collected for every line and
    raised together as one `error` ("file:line: problem"); nothing is silently dropped. Given a
    `skipped` list, the problems go there instead and the good rows are returned (an importer
    that lists what it left out). `name` is how the file is called in messages (default: the path)."""
    name = name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8") if isinstance(path, str) else path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    rows, errors, seen = [], [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{name}:{lineno}: malformed JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{name}:{lineno}: expected a JSON object, got {type(row).__name__}")
            continue
        problems = check(row)
        if not problems and unique is not None:
            key = row.get(unique)
            if key in seen:
                problems = [f"field {unique!r}: duplicate {unique} {key!r} (first on line {seen[key]})"]
            seen.setdefault(key, lineno)
        if problems:
            errors.extend(f"{name}:{lineno}: {p}" for p in problems)
            continue
        rows.append((lineno, row))
    if skipped is not None:
        skipped.extend(errors)
    elif errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise error(f"{len(errors)} problem(s) in {name}:\n  " + "\n  ".join(shown))
    if not rows and not errors:
        raise error(f"{name}: no {what} (the file is empty)")
    return rows
