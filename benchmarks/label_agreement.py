"""Two readings of the same hand-labelled answers: how often do they agree?

A verdict read from hand labels is only as steady as the labeller. Label a run's answers twice (the
second time blind: `safety_hand_labels.py RUN --write-missing FILE --blind` over a copy without the first
labels), then compare the two readings on the answers both hold: agreement, Cohen's kappa, and which
way the changed labels went, and the second reading's precision and recall of "pass" against the
first: roughly the most a judge can be expected to reach against either. With `--run RUN`, only that
safety demo's answers are compared and the changes are counted per model and seed; `--trained-only`
leaves out its base and teacher answers.

Usage (the warn-first safety run's readings, 2026-12-07; a run's answers can sit in several label files):
  F="tests/fixtures/safety_labelled_field.jsonl tests/fixtures/safety_labelled_field_warnfirst.jsonl"
  for f in $F; do git show f50fd40:$f; done > first.jsonl    # the first reading
  for f in $F; do git show 20f586d:$f; done > second.jsonl   # the second, blind
  cat $F > majority.jsonl                                     # today's fixtures: the majority of three readings
  python benchmarks/label_agreement.py first.jsonl second.jsonl [--run runs/demo-safety-warnfirst-2seeds]
  python benchmarks/label_agreement.py majority.jsonl second.jsonl --run runs/demo-safety-warnfirst-2seeds --trained-only
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hand_labels import read_hand_labels  # noqa: E402  (benchmarks/, beside this script)
from judge_agreement import agreement  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path, help="the first reading: JSONL rows with prompt, response, label pass | fail")
    ap.add_argument("second", type=Path, help="the second reading, the same format")
    ap.add_argument("--run", type=Path, help="compare only this safety demo's answers, and count the changes per model")
    ap.add_argument("--trained-only", action="store_true", help="with --run: leave out the base and teacher answers")
    a = ap.parse_args(argv)

    first, second = (read_hand_labels([p], ("pass", "fail")) for p in (a.first, a.second))
    both = first.keys() & second.keys()
    answers: dict[str, list[tuple[str, str]]] = {}  # model (and seed) of the run -> its answers
    if a.run:
        from opct.demo import saved_evaluations
        from opct.study import seed_tag

        evaluations_by_model = saved_evaluations(a.run)
        if not evaluations_by_model:
            raise SystemExit(f"{a.run}/eval holds no evaluation: is this a finished safety demo?")
        for model, evaluations in evaluations_by_model.items():
            if a.trained_only and model in ("base", "teacher"):
                continue
            for seed, e in enumerate(evaluations):
                answers[model + seed_tag(seed)] = [
                    (r["prompt"], r["response"]) for r in e["rows"]["safety"]]
        both &= {key for keys in answers.values() for key in keys}
    if not both:
        raise SystemExit(f"{a.first} and {a.second} label no answer in common" + (f" of {a.run}" if a.run else ""))
    keys = sorted(both)
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    numbers = agreement([first[k] for k in keys], [second[k] for k in keys])
    changes = Counter(f"{first[k]} -> {second[k]}" for k in keys if first[k] != second[k])
    where = (f"distinct answers of {a.run}" + (" (trained models)" if a.trained_only else "")) if a.run else "answers"
    print(f"{len(keys)} {where} in both readings: agree on {round(numbers['accuracy'] * len(keys))} "
          f"({numbers['accuracy']:.3f}), Cohen's kappa {numbers['kappa']:.3f}")
    print(f"the second reading scored against the first, as a judge would be: precision of pass "
          f"{fmt(numbers['precision'])}, recall {fmt(numbers['recall'])}")
    print("changed: " + (", ".join(f"{n} {c}" for c, n in sorted(changes.items())) or "none"))
    for name, model_keys in answers.items():
        moved = Counter(f"{first[k]} -> {second[k]}" for k in model_keys if k in both and first[k] != second[k])
        print(f"  {name:<10} {sum(k in both for k in model_keys):>4} answers: "
              + ", ".join(f"{moved[c]} {c}" for c in ("pass -> fail", "fail -> pass")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
