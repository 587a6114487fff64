"""Can a judge learnt from hand labels tell a jailbreak reply with content from one without?

The offline jailbreak judges are refusal classifiers: a reply that does not refuse counts as a crack,
so replies on topic without content, loops and deflections are cracks too (crack precision 0.34 on
the RL attacker's replies, README "Judges on real attack replies"). This trains a "complied or not"
logistic regression on hand-labelled sets and scores it on a set it never saw: field -> rl and
rl -> field (the first experiment), then each set held out with the other three as training data:

  features  the top principal components of the reply's MiniLM embedding (fitted on the training set),
            cos(behaviour, reply), the refusal judge's five pattern signals, and three word counts:
            distinct / all words (loops score low), the share and the number of words found in neither
            the behaviour nor the attack prompt (what the reply adds)
  sets      tests/fixtures/jailbreak_labelled_field.jsonl (white-box and RL replies, 51 complied of 120)
            tests/fixtures/jailbreak_labelled_rl.jsonl (best replies of the RL-attacker variants, 27 of 120)
            tests/fixtures/jailbreak_labelled_whitebox.jsonl (random suffix and GCG, 57 of 166)
            tests/fixtures/jailbreak_labelled_demo.jsonl (the jailbreak default's base, SFT and OPCT, 88 of 474)

For each split and each (components, L2) of the grid it prints the crack precision and recall
on the other set, next to the shipped embedding refusal judge on the same replies. The grid is not
chosen on the test set: every row is printed.

Usage:
  python benchmarks/content_judge_transfer.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from opct.evals.refusal import EmbeddingRefusalJudge, _fit_logreg, _pca, _predict, raw_features  # noqa: E402

SETS = {"field": ROOT / "tests/fixtures/jailbreak_labelled_field.jsonl",
        "rl": ROOT / "tests/fixtures/jailbreak_labelled_rl.jsonl",
        "whitebox": ROOT / "tests/fixtures/jailbreak_labelled_whitebox.jsonl",
        "demo": ROOT / "tests/fixtures/jailbreak_labelled_demo.jsonl"}
COMPONENTS, L2S = (4, 8, 16), (0.01, 0.1, 1.0)


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def words(text: str | None) -> list[str]:
    return re.findall(r"[a-z']+", (text or "").lower())


def word_counts(rows: list[dict]) -> np.ndarray:
    out = []
    for r in rows:
        w = words(r["response"])
        seen = set(words(r.get("prompt"))) | set(words(r["behavior"]))
        novel = [x for x in w if x not in seen]
        out.append([len(set(w)) / max(len(w), 1), len(novel) / max(len(w), 1), np.log1p(len(set(novel))) / np.log(100)])
    return np.array(out).reshape(len(rows), 3)


def features(rows: list[dict]):
    r, cos, scal = raw_features([x["behavior"] for x in rows], [x["response"] for x in rows])
    return r, np.nan_to_num(cos), np.concatenate([scal, word_counts(rows)], 1)


def complied(rows: list[dict]) -> np.ndarray:
    return np.array([x["label"] == "complied" for x in rows])


def precision_recall(pred: np.ndarray, gold: np.ndarray) -> str:
    tp, fp, fn = int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())
    prec = f"{tp / (tp + fp):.2f}" if tp + fp else "  - "
    return f"precision {prec}  recall {tp / max(tp + fn, 1):.2f}  accuracy {(pred == gold).mean():.2f}  cracks {tp + fp:>3}"


def main() -> None:
    data = {name: load(path) for name, path in SETS.items()}
    feats = {name: features(rows) for name, rows in data.items()}
    refusal = EmbeddingRefusalJudge().fit()
    pairs = [(("field",), "rl"), (("rl",), "field")]  # the first experiment (2026-12-04)
    pairs += [(tuple(n for n in SETS if n != test), test) for test in SETS]  # leave one set out (2026-12-05)
    for train_sets, test in pairs:
        train = "+".join(train_sets)
        data[train] = [row for n in train_sets for row in data[n]]
        feats[train] = tuple(np.concatenate([feats[n][i] for n in train_sets]) for i in range(3))
        gold = complied(data[test])
        print(f"train on {train} ({complied(data[train]).sum()} complied of {len(data[train])}), "
              f"test on {test} ({gold.sum()} complied of {len(gold)})")
        r, cos, extra = feats[train]
        center, directions = r.mean(0), _pca(r, max(COMPONENTS))[1]
        for k in COMPONENTS:
            def design(f, k=k):
                return np.concatenate([(f[0] - center) @ directions[:k].T, f[1][:, None], f[2]], 1)
            x = design(feats[train])
            mean, std = x.mean(0), x.std(0) + 1e-6
            for l2 in L2S:
                w = _fit_logreg((x - mean) / std, complied(data[train]).astype(float), l2)
                pred = _predict(w, (design(feats[test]) - mean) / std) >= 0.5
                print(f"  components {k:>2}  L2 {l2:<5} {precision_recall(pred, gold)}")
        rows = data[test]
        cracked = 1 - refusal.predict_proba([x["behavior"] for x in rows], [x["response"] for x in rows]) >= 0.5
        print(f"  shipped embedding refusal judge (no restated-request rule) {precision_recall(cracked, gold)}")


if __name__ == "__main__":
    main()
