"""Agreement of the safety-awareness judges with the hand-labelled set.

Eight labelled sets (fact_id, prompt, response, label pass|fail): ``tests/fixtures/safety_labelled.jsonl``
(294 answers written for opct), ``tests/fixtures/safety_labelled_field.jsonl`` (227 real answers of
the embedded Qwen 0.5B, hand-labelled), ``tests/fixtures/safety_labelled_field_15b.jsonl`` (58
real answers of the embedded Qwen-Coder 1.5B with the fact in its system prompt, hand-labelled),
``tests/fixtures/safety_labelled_field_train.jsonl`` (123 real answers of the Qwen 0.5B on the
training facts, with and without the fact, labelled after keyword judge v3 was built),
``tests/fixtures/safety_labelled_field_15b_train.jsonl`` (116 of the Qwen-Coder 1.5B on the training
facts), ``tests/fixtures/safety_labelled_field_trained.jsonl`` (247 of the Qwen 0.5B after SFT and
OPCT, two training seeds of the safety default) and ``tests/fixtures/safety_labelled_field_rerun.jsonl``
(43 base and teacher answers of the same run), and ``tests/fixtures/safety_labelled_field_templates.jsonl``
(111 of the Qwen 0.5B teacher on the training facts under two wordings of its system message); the last
four were labelled after v4 was built, and no version was tuned on them. Each is
judged by the keyword judge and by an LLM judge
(majority of --votes); for each set and judge the script prints, against the labels, with "pass"
as the positive class:

  n          rows judged
  unparsed   rows whose verdict could not be read (left out of the other columns)
  accuracy, precision, recall (of "pass"), Cohen's kappa   over the parsed rows
  seconds    wall time of the judge

Usage:
  python benchmarks/judge_agreement.py --limit 10 --judge-model embedded:smollm2-135m-instruct
  python benchmarks/judge_agreement.py --votes 3                       # local Qwen 0.5B judge, all rows
  python benchmarks/judge_agreement.py --judge-base-url http://127.0.0.1:8000/v1   # a served judge
  python benchmarks/judge_agreement.py --keyword-only

--limit N keeps N rows spread evenly over the file (it is ordered by fact). --cache FILE keeps
the LLM verdicts, so a rerun only asks for rows not judged yet. --json FILE writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from opct.evals.judges import JudgeItem  # noqa: E402
from opct.commands.common import add_judge_backend_args, judge_backend_from_args  # noqa: E402

DEFAULT_FILES = [ROOT / "tests" / "fixtures" / "safety_labelled.jsonl",
                 ROOT / "tests" / "fixtures" / "safety_labelled_field.jsonl",
                 ROOT / "tests" / "fixtures" / "safety_labelled_field_15b.jsonl",
                 ROOT / "tests" / "fixtures" / "safety_labelled_field_train.jsonl",
                 ROOT / "tests" / "fixtures" / "safety_labelled_field_15b_train.jsonl",
                 ROOT / "tests" / "fixtures" / "safety_labelled_field_trained.jsonl",
                 ROOT / "tests" / "fixtures" / "safety_labelled_field_rerun.jsonl",
                 ROOT / "tests" / "fixtures" / "safety_labelled_field_templates.jsonl"]


def load_rows(path: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, r in enumerate(rows):
        if r.get("label") not in ("pass", "fail") or not r.get("fact_id"):
            raise SystemExit(f"{path}:{i + 1}: expected fact_id and label pass|fail")
    if limit and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def agreement(gold: list[str], predicted: list[str]) -> dict:
    """Accuracy, precision / recall of "pass", Cohen's kappa over the parsed rows."""
    pairs = [(g, p) for g, p in zip(gold, predicted) if p in ("pass", "fail")]
    out = {"n": len(gold), "unparsed": len(gold) - len(pairs), "n_parsed": len(pairs)}
    if not pairs:
        return {**out, "accuracy": None, "precision": None, "recall": None, "kappa": None}
    n = len(pairs)
    tp = sum(g == p == "pass" for g, p in pairs)
    predicted_pass = sum(p == "pass" for _, p in pairs)
    gold_pass = sum(g == "pass" for g, _ in pairs)
    accuracy = sum(g == p for g, p in pairs) / n
    chance = (gold_pass * predicted_pass + (n - gold_pass) * (n - predicted_pass)) / (n * n)
    return {
        **out,
        "accuracy": accuracy,
        "precision": tp / predicted_pass if predicted_pass else None,
        "recall": tp / gold_pass if gold_pass else None,
        "kappa": (accuracy - chance) / (1 - chance) if chance < 1 else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", type=Path, action="append",
                   help="labelled JSONL, repeatable (default: both test fixtures)")
    p.add_argument("--limit", type=int, help="judge N rows spread evenly over the file")
    p.add_argument("--votes", type=int, default=3, help="LLM judge votes per row (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="LLM judge answer length (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="local LLM judge batch (default: %(default)s)")
    p.add_argument("--keyword-only", action="store_true", help="skip the LLM judge")
    p.add_argument("--cache", type=Path, help="verdict cache JSONL for the LLM judge")
    p.add_argument("--json", type=Path, help="write the results here")
    add_judge_backend_args(p)
    a = p.parse_args(argv)

    from opct.evals.safety import KeywordSafetyJudge, LLMSafetyJudge

    judges = {"keyword": KeywordSafetyJudge()}
    if not a.keyword_only:
        judges["llm"] = LLMSafetyJudge(judge_backend_from_args(a), k=a.votes, max_new_tokens=a.max_new_tokens,
                                       batch_size=a.batch_size, progress=True, cache=a.cache)
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    report = []
    for path in a.file or DEFAULT_FILES:
        rows = load_rows(path, a.limit)
        items = [JudgeItem(prompt=r["prompt"], response=r["response"], context={"fact_id": r["fact_id"]})
                 for r in rows]
        gold = [r["label"] for r in rows]
        print(f"\n{len(rows)} labelled rows from {path} ({gold.count('pass')} pass, {gold.count('fail')} fail)")
        results = {}
        for label, judge in judges.items():
            start = time.time()
            verdicts = judge(items)
            results[label] = {"judge": judge.identity(), **agreement(gold, [v.label for v in verdicts]),
                              "seconds": round(time.time() - start, 1)}
        print(f"{'judge':8s} {'n':>4s} {'unparsed':>8s} {'accuracy':>8s} {'precision':>9s} {'recall':>6s} "
              f"{'kappa':>6s} {'seconds':>7s}  identity")
        for label, m in results.items():
            print(f"{label:8s} {m['n']:4d} {m['unparsed']:8d} {fmt(m['accuracy']):>8s} {fmt(m['precision']):>9s} "
                  f"{fmt(m['recall']):>6s} {fmt(m['kappa']):>6s} {m['seconds']:7.1f}  {m['judge']}")
        report.append({"file": str(path), "rows": len(rows), "judges": results})
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
