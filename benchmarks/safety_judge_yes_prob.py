"""An LLM safety judge read by probability: P(Yes) / (P(Yes) + P(No)) for the judge's first answer
token, thresholded, instead of its greedy word.

The threshold is chosen on the written set (tests/fixtures/safety_labelled.jsonl, the best accuracy
there) and then applied, unchanged, to the real answers (tests/fixtures/safety_labelled_field.jsonl),
which play no part in choosing it. Printed per set: the ranking quality (AUC: the chance that a
random real warning scores above a random non-warning), and precision / recall of "pass" at the
chosen threshold. The threshold that would be best on the real answers is printed too, marked as
tuned on the test, to show the most any threshold could give.

Usage:
  python benchmarks/safety_judge_yes_prob.py                                   # Qwen-Coder 1.5B
  python benchmarks/safety_judge_yes_prob.py --judge-model embedded:qwen2.5-0.5b-instruct
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

WRITTEN = ROOT / "tests" / "fixtures" / "safety_labelled.jsonl"
FIELD = ROOT / "tests" / "fixtures" / "safety_labelled_field.jsonl"


def auc(scores: list[float], gold: list[bool]) -> float:
    pos = [s for s, g in zip(scores, gold) if g]
    neg = [s for s, g in zip(scores, gold) if not g]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def at(scores: list[float], gold: list[bool], t: float) -> dict[str, float | None]:
    said = [s >= t for s in scores]
    tp = sum(s and g for s, g in zip(said, gold))
    return {"threshold": t, "accuracy": sum(s == g for s, g in zip(said, gold)) / len(gold),
            "precision": tp / sum(said) if any(said) else None, "recall": tp / sum(gold)}


def best(scores: list[float], gold: list[bool]) -> dict[str, float | None]:
    return max((at(scores, gold, t) for t in sorted(set(scores))), key=lambda r: r["accuracy"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--judge-model", default="embedded:qwen2.5-coder-1.5b-instruct", help="(default: %(default)s)")
    p.add_argument("--json", type=Path, help="write the numbers here")
    args = p.parse_args(argv)

    import torch

    from opct.evals.judges import JudgeItem
    from opct.evals.mcq import letter_probs
    from opct.evals.safety import _fact_context, judge_messages
    from opct.models import load_model

    model, tokenizer = load_model(args.judge_model, dtype=torch.bfloat16)
    out = {}
    for name, path in (("written", WRITTEN), ("real", FIELD)):
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        items = [JudgeItem(prompt=r["prompt"], response=r["response"], context={"fact_id": r["fact_id"]}) for r in rows]
        start = time.time()
        probs = letter_probs(model, tokenizer, [judge_messages(it, _fact_context(it)[0]) for it in items],
                             letters=["Yes", "No"], answer_prefix="", progress=f"P(Yes), {name}")
        out[name] = {"scores": probs[:, 0].tolist(), "gold": [r["label"] == "pass" for r in rows],
                     "seconds": round(time.time() - start, 1)}
    t = best(out["written"]["scores"], out["written"]["gold"])["threshold"]
    print(f"\njudge {args.judge_model}; threshold {t:.3f} (best accuracy on the written set)")
    print(f"{'set':<9}{'n':>5}{'pass':>6}{'AUC':>7}{'accuracy':>10}{'precision':>11}{'recall':>8}{'seconds':>9}")
    for name, r in out.items():
        m = at(r["scores"], r["gold"], t)
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{name:<9}{len(r['gold']):>5}{sum(r['gold']):>6}{auc(r['scores'], r['gold']):>7.3f}"
              f"{fmt(m['accuracy']):>10}{fmt(m['precision']):>11}{fmt(m['recall']):>8}{r['seconds']:>9}")
        r.update(auc=auc(r["scores"], r["gold"]), at_written_threshold=m)
    tuned = best(out["real"]["scores"], out["real"]["gold"])
    print(f"(tuned on the real answers themselves, not a fair setting: threshold {tuned['threshold']:.3f}, "
          f"precision {tuned['precision'] or 0:.3f}, recall {tuned['recall']:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"judge": args.judge_model, "threshold": t, "sets": out,
                                         "tuned_on_real": tuned}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
