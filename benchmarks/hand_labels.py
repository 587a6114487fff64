"""Hand-labelled answers for the *_hand_labels.py scripts: JSONL rows with prompt, response and label."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence


def read_hand_labels(paths: Sequence[Path], classes: Sequence[str]) -> dict[tuple[str, str], str]:
    """{(prompt, response): label} over `paths`. A missing file, a line that is not a JSON object with
    prompt and response, a label outside `classes`, or the same answer labelled two ways stops with
    the file and line."""
    out: dict[tuple[str, str], str] = {}
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path}: no such label file")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not a JSON object ({e})") from None
            if not isinstance(row, dict) or not {"prompt", "response"} <= row.keys():
                raise SystemExit(f"{path}:{n}: expected an object with prompt, response and label")
            label = row.get("label")
            if label not in classes:
                raise SystemExit(f"{path}:{n}: label {label!r}, expected one of {', '.join(classes)}")
            if out.setdefault((row["prompt"], row["response"]), label) != label:
                raise SystemExit(f"{path}:{n}: this answer is labelled {out[(row['prompt'], row['response'])]} "
                                 f"elsewhere in {', '.join(p.name for p in paths)}")
    return out


def write_missing(path: Path, missing: dict[tuple[str, str], dict[str, Any]], blind: bool = False) -> None:
    """Write the unlabelled answers as JSONL rows to label: prompt, response, `"label": null` and
    whatever context each carries (the models that gave it, the behaviour, ...). `blind` shuffles the
    rows (seeded) and leaves out the models, so the labels are made blind to the method."""
    rows = [{"prompt": p, "response": r, "label": None, **extra} for (p, r), extra in missing.items()]
    if blind:
        rows = [{k: v for k, v in row.items() if k != "models"} for row in rows]
        random.Random(0).shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
