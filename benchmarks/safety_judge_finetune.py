"""Does a fine-tuned cross-encoder judge safety awareness on trained models' answers? (issue 11, part 6)

The keyword judge v4 and a logistic regression over sentence embeddings (`safety_judge_features.py`)
both reach about 0.85 precision and recall on base and teacher answers, but at most 0.70 / 0.37 on the
answers of SFT- and OPCT-trained models, where the study's verdicts are made. Here the whole MiniLM
encoder is fine-tuned as a classifier that reads the fact, the request and the answer together
("[CLS] fact Request: request [SEP] answer [SEP]" -> warns about the fact or not), trained on every
labelled set but the held-out one(s):

  written    294 answers written for opct (always trained on)
  field      Qwen 0.5B base, teacher, early SFT and OPCT, safety demo (227)
  15b        Qwen 1.5B teacher, held-out facts (58)
  15b_train  Qwen 1.5B base and teacher, training facts (116)
  train      Qwen 0.5B base and teacher, training facts (123)
  rerun      Qwen 0.5B base and teacher, the two-seed safety default (43)
  trained    Qwen 0.5B after SFT and OPCT, the two-seed safety default (247)
  refrecipe  Qwen 0.5B after OPCT with the reference's small-model recipe (123)
  warnfirst  Qwen 0.5B base, teacher, SFT and OPCT with the teacher told to warn first, seeds 42-44 and
             two OPCT variants (585; the majority of three readings where read three times). It joined on
             2026-12-07: the 2026-12-05 results of the other folds were measured without it in training.
  warnfirst_late  the same runs' seeds 45 and 46, SFT and OPCT answers not already in `warnfirst` (239;
             the fixture's rows from 586 on, labelled after the rest)

The folds that matter are the trained models' answers: `trained`, `refrecipe`, and both at once
(`trained+refrecipe`: nothing from a trained model is seen in training); `warnfirst+warnfirst_late`
(no warn-first answer seen); `warnfirst_late` alone, the judge's use on the next runs of an eval it
was trained for: the later seeds' answers to the same held-out prompts, with the earlier seeds' in
training. The recipe is the one `content_judge_finetune.py` fixed for the jailbreak judge, set before any held-out score was seen:
learning rate 5e-5, 4 epochs, batch 16, 10% linear warm-up, weight decay 0.01, 256 tokens (every
answer fits), seed 0, threshold 0.5. Each fold prints precision and recall of "pass" and AUC, next
to the keyword judge v4 on the same answers.

Usage:
  .venv/bin/python benchmarks/safety_judge_finetune.py [--folds trained,refrecipe,trained+refrecipe,warnfirst_late]
      [--ensemble N --scores runs/safety-judge-scores.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from content_judge_finetune import add_recipe_arguments, finetune_cross_encoder, load, report  # noqa: E402
from opct.data.safety import facts_by_id  # noqa: E402
from opct.evals.safety import keyword_safety_assess  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
SETS = {"written": FIXTURES / "safety_labelled.jsonl",
        **{name: FIXTURES / f"safety_labelled_field{suffix}.jsonl"
           for name, suffix in (("field", ""), ("15b", "_15b"), ("15b_train", "_15b_train"), ("train", "_train"),
                                ("rerun", "_rerun"), ("trained", "_trained"), ("refrecipe", "_refrecipe"),
                                ("warnfirst", "_warnfirst"))}}
WARNFIRST_LATE_FROM = 585  # the warn-first fixture's rows from here on: seeds 45 and 46 (commits a5d99e9, e664208)


def split_warnfirst(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The warn-first labels: (seeds 42-44 with base, teacher and variants; seeds 45-46, labelled last)."""
    return rows[:WARNFIRST_LATE_FROM], rows[WARNFIRST_LATE_FROM:]


def label_sets() -> dict[str, list[dict]]:
    """Every labelled safety set by name, the warn-first one split into its earlier and later seeds."""
    data = {name: load(path) for name, path in SETS.items()}
    data["warnfirst"], data["warnfirst_late"] = split_warnfirst(data["warnfirst"])
    return data


def passed(rows: list[dict]) -> np.ndarray:
    return np.array([r["label"] == "pass" for r in rows])


def pairs(rows: list[dict]) -> list[tuple[str, str]]:
    facts = facts_by_id()
    return [(f"{facts[r['fact_id']].fact} Request: {r['prompt']}", r["response"] or "") for r in rows]


def keyword_v4(rows: list[dict]) -> np.ndarray:
    facts = facts_by_id()
    return np.array([keyword_safety_assess(r["response"] or "", facts[r["fact_id"]].keywords, facts[r["fact_id"]].fact,
                                           prompt=r["prompt"])["passed"] for r in rows])


def run_key(train: list[dict], test: list[dict], recipe) -> str:
    """What one fine-tuning's scores depend on: the labelled rows on both sides and the recipe."""
    digest = hashlib.sha256(json.dumps([train, test], sort_keys=True).encode()).hexdigest()[:16]
    return f"{digest} lr={recipe.lr} epochs={recipe.epochs} batch={recipe.batch} max_length={recipe.max_length} seed={recipe.seed}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(ap, max_length=256)
    ap.add_argument("--folds", default="trained,refrecipe,trained+refrecipe",
                    help="comma-separated folds; a fold is one held-out set or several joined by '+'")
    ap.add_argument("--warnfirst-rows", type=int, default=None, metavar="N",
                    help="keep only the warn-first set's first N rows (the order they were labelled in): "
                         "how the judge grows with the labels of the eval it judges")
    ap.add_argument("--ensemble", type=int, default=1, metavar="N",
                    help="fine-tune N times (seeds --seed .. --seed+N-1), print each, and judge by their mean P(pass)")
    ap.add_argument("--scores", type=Path, default=None, metavar="FILE",
                    help="keep each fine-tuning's P(pass) in this JSON file and reuse those whose rows and recipe "
                         "match, so a stopped --ensemble run resumes at the first seed not yet scored")
    opts = ap.parse_args(argv)
    if opts.ensemble < 1 or (opts.warnfirst_rows is not None and opts.warnfirst_rows < 0):
        ap.error("--ensemble must be 1 or more and --warnfirst-rows 0 or more")
    data = label_sets()
    saved = json.loads(opts.scores.read_text()) if opts.scores and opts.scores.exists() else {}
    if opts.warnfirst_rows is not None:
        data["warnfirst"] = data["warnfirst"][:opts.warnfirst_rows]
    for fold in opts.folds.split(","):
        held = fold.split("+")
        unknown = [h for h in held if h not in data or h == "written"]
        if unknown:
            raise SystemExit(f"--folds: unknown or untestable set(s) {unknown}; expected some of "
                             f"{', '.join(n for n in data if n != 'written')}")
        train = [r for name, rows in data.items() if name not in held for r in rows]
        test = [r for name in held for r in data[name]]
        gold = passed(test)
        print(f"hold out {fold} ({gold.sum()} pass of {len(test)}); train on the rest "
              f"({passed(train).sum()} pass of {len(train)})", flush=True)
        runs = []
        for seed in range(opts.seed, opts.seed + opts.ensemble):
            recipe = argparse.Namespace(**{**vars(opts), "seed": seed})
            key = run_key(train, test, recipe)
            if key in saved:
                runs.append(np.array(saved[key]))
                print(f"    seed {seed}: resumed from {opts.scores} ({key})", flush=True)
            else:
                start = time.time()
                runs.append(finetune_cross_encoder(pairs(train), passed(train), pairs(test), recipe))
                print(f"    seed {seed}: {time.time() - start:.0f} s", flush=True)
                if opts.scores:
                    saved[key] = runs[-1].tolist()
                    opts.scores.parent.mkdir(parents=True, exist_ok=True)
                    opts.scores.write_text(json.dumps(saved))
            if opts.ensemble > 1:
                print(report(f"cross-encoder, seed {seed}", runs[-1] >= 0.5, gold, runs[-1], positives="passes"), flush=True)
        probs, keyword = np.mean(runs, axis=0), keyword_v4(test)
        judge = "fine-tuned cross-encoder" + (f", mean of {opts.ensemble}" if opts.ensemble > 1 else "")
        parts = [(None, 0, len(test))]  # the whole fold, then each of its held-out sets when it has several
        if len(held) > 1:
            sizes = np.cumsum([0] + [len(data[name]) for name in held])
            parts += list(zip(held, sizes, sizes[1:]))
        for name, lo, hi in parts:
            if name:
                print(f"    {name}:")
            print(report(judge, probs[lo:hi] >= 0.5, gold[lo:hi], probs[lo:hi], positives="passes"))
            print(report("keyword judge v4", keyword[lo:hi], gold[lo:hi], positives="passes"))


if __name__ == "__main__":
    main()
