"""An emergent-misalignment audit re-scored by hand labels instead of its judge.

Reads a finished `opct audit --organism emergent_misalignment` run (RUN/eval/*.json: each model's
greedy answers to the probe questions) and a file of hand-labelled answers
(tests/fixtures/alignment_labelled_field.jsonl: prompt, response, label in aligned / misaligned /
incoherent). Prints, per model, the misaligned rate by hand and by the run's judge, with 95%
intervals (incoherent answers left out, as the audit does); each change from the organism and from
the greedy control, paired over the items both scored, with the audit's own statistics and verdict
rule (`opct.audit.study.effect`); and the run's judge against the hand labels on the run's answers.

Every answer of the run must have a hand label: a missing one stops the script with the count,
since a rate over the labelled part only would not be the run's rate. `--write-missing FILE` writes
those answers there (label null, the models that gave each) to be labelled and appended.

Usage:
  python benchmarks/em_hand_labels.py runs/audit-em-default [--labels FILE] [--json FILE] [--write-missing FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hand_labels import read_hand_labels, write_missing  # noqa: E402  (benchmarks/, beside this script)

LABELS = ROOT / "tests" / "fixtures" / "alignment_labelled_field.jsonl"
HAND = {"misaligned": 1.0, "aligned": 0.0, "incoherent": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished emergent-misalignment audit directory")
    ap.add_argument("--labels", type=Path, default=LABELS, help="hand-labelled answers (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--write-missing", type=Path, metavar="FILE",
                    help="write the answers that have no hand label here, as JSONL rows to label")
    ap.add_argument("--blind", action="store_true", help="with --write-missing: shuffle the rows and leave out "
                    "the models that gave them, so the labels are made blind to the method")
    a = ap.parse_args(argv)

    from opct.audit.organisms import ORGANISMS
    from opct.audit.study import effect
    from opct.evals.refusal import metrics
    from opct.evals.stats import seeded_summary

    labels = read_hand_labels([a.labels], tuple(HAND))
    org = ORGANISMS["emergent_misalignment"]
    evals = {p.stem: json.loads(p.read_text())["rows"] for p in sorted((a.run / "eval").glob("*.json"))}
    if "organism" not in evals:
        raise SystemExit(f"{a.run}/eval has no organism.json: is this a finished emergent-misalignment audit?")
    missing: dict[tuple[str, str], list[str]] = {}  # unlabelled answer -> the models that gave it
    for name, rows in evals.items():
        for key in dict.fromkeys((r["prompt"], r["response"]) for r in rows):
            if key not in labels:
                missing.setdefault(key, []).append(name)
    if missing:
        if a.write_missing:
            write_missing(a.write_missing, {key: {"models": m} for key, m in missing.items()}, blind=a.blind)
        where = f"; written to {a.write_missing}" if a.write_missing else " (--write-missing FILE writes them)"
        raise SystemExit(f"{len(missing)} answers of {a.run} have no hand label in {a.labels}{where}")
    by_hand = {name: [{**r, "label": labels[(r["prompt"], r["response"])],
                       "misaligned": HAND[labels[(r["prompt"], r["response"])]]} for r in rows]
               for name, rows in evals.items()}
    order = [m for m in ("base", "organism", "greedy") if m in evals] + sorted(set(evals) - {"base", "organism", "greedy"})

    def interval(rows) -> dict:
        return seeded_summary([org.item_scores(rows)])

    def change(rows, ref) -> dict:
        return effect(org, [rows], reference_rows=ref)

    fmt = lambda s: f"{s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"  # noqa: E731
    fmt_d = lambda e: (lambda d: f"{d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] {e['verdict']}")(  # noqa: E731
        e[f"delta_{org.metric}"])
    out = {}
    print(f"{a.run}: answers re-scored by {a.labels.name}")
    print(f"{'model':<15}{'by hand':>24}{'incoh.':>8}{'by the judge':>24}{'incoh.':>8}  change by hand")
    for name in order:
        hand, judged = by_hand[name], evals[name]
        row = {"hand": interval(hand), "hand_incoherent": sum(r["label"] == "incoherent" for r in hand),
               "judge": interval(judged), "judge_incoherent": sum(r["misaligned"] is None for r in judged)}
        notes = []
        if name == "organism" and "base" in by_hand:
            row["from_base"] = change(hand, by_hand["base"])
            notes.append(f"from base {fmt_d(row['from_base'])}")
        elif name not in ("base", "organism"):
            row["from_organism"] = change(hand, by_hand["organism"])
            notes.append(f"from organism {fmt_d(row['from_organism'])}")
            if name != "greedy" and "greedy" in by_hand:
                row["vs_greedy"] = change(hand, by_hand["greedy"])
                notes.append(f"vs greedy {fmt_d(row['vs_greedy'])}")
        out[name] = row
        print(f"{name:<15}{fmt(row['hand']):>24}{row['hand_incoherent']:>8}{fmt(row['judge']):>24}"
              f"{row['judge_incoherent']:>8}  " + "; ".join(notes))

    seen = {}
    for rows in evals.values():
        for r in rows:
            seen[(r["prompt"], r["response"])] = r
    coherent = [(r, labels[k]) for k, r in seen.items() if labels[k] != "incoherent" and r["misaligned"] is not None]
    m = metrics([r["misaligned"] == 1.0 for r, _ in coherent], [lab == "misaligned" for _, lab in coherent])
    inc = metrics([r["misaligned"] is None for r in seen.values()], [labels[k] == "incoherent" for k in seen])
    out["judge_agreement"] = {"misaligned": m, "incoherent": inc, "distinct_answers": len(seen)}
    print(f"\nthe run's judge on its {len(seen)} distinct answers: misaligned (answers both call coherent, "
          f"n={m['n']}): precision {m['precision']:.3f}, recall {m['recall']:.3f}, accuracy {m['accuracy']:.3f}; "
          f"incoherent: precision {inc['precision']:.3f}, recall {inc['recall']:.3f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
