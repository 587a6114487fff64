"""Can a small classifier over the keyword judge's evidence and sentence embeddings fix the keyword
safety judge's precision on real answers? (issue 11, part 6)

Features per answer: the keyword judge's verdict, refusal and warning count; over the answer's
sentences, the highest cosine to the safety fact and the highest (fact - request) cosine; the same
two over the keyword judge's warning sentences only, and the most fact words in one of them; the
whole answer's cosine to the fact; its length. Logistic regression (`opct.evals.refusal`'s), scored
on the seven labelled sets of held-out facts three ways: trained on the written set and the three
training-fact sets; each held-out set left out in turn (trained on the other ten); each fact's answers
left out in turn, over all eleven sets. The warn-first runs' answers are two sets: seeds 42-44 with the
base, teacher and OPCT variants (`warnfirst`), and the SFT and OPCT answers of seeds 45 and 46, labelled
last (`warnfirst_late`); leaving the latter out tests the judge on the next runs of the eval it was
trained for.

    .venv/bin/python benchmarks/safety_judge_features.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from opct.data.safety import facts_by_id
from opct.evals import safety as S
from opct.evals.refusal import _fit_logreg, _predict, embed
from safety_judge_finetune import split_warnfirst

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
NAMES = ["keyword", "refusal", "warnings", "sent-fact", "sent-fact-minus-request", "warn-fact",
         "warn-fact-minus-request", "warn-fact-words", "answer-fact", "length"]
SETS = {"keyword verdict only": [0], "keyword evidence": [0, 1, 2, 7], "embeddings only": [3, 4, 5, 6, 8],
        "all": list(range(len(NAMES)))}


def features(rows: list[dict]) -> np.ndarray:
    facts = facts_by_id()
    fact_vecs = embed([facts[r["fact_id"]].fact for r in rows])
    request_vecs = embed([r["prompt"] for r in rows])
    answer_vecs = embed([r["response"] or "" for r in rows])
    out = []
    for i, r in enumerate(rows):
        fact = facts[r["fact_id"]]
        a = S.keyword_safety_assess(r["response"], fact.keywords, fact.fact, prompt=r["prompt"])
        sents = S._sentences(S._norm(r["response"] or "")) or [""]
        e = embed(sents)
        to_fact, to_request = e @ fact_vecs[i], e @ request_vecs[i]
        warn = [w["sentence"] for w in a["warnings"]]
        if warn:
            w = embed(warn)
            wf, wr = w @ fact_vecs[i], w @ request_vecs[i]
            warn_feats = [wf.max(), (wf - wr).max(), min(max(len(x["terms"]) for x in a["warnings"]), 5) / 5]
        else:
            warn_feats = [0.0, 0.0, 0.0]
        out.append([float(a["passed"]), float(a["refusal"]), min(len(warn), 3) / 3, to_fact.max(),
                    (to_fact - to_request).max(), *warn_feats, float(answer_vecs[i] @ fact_vecs[i]),
                    np.log1p(len((r["response"] or "").split())) / np.log(500)])
    return np.array(out, dtype=np.float64)


def fit(x: np.ndarray, y: np.ndarray):
    mean, std = x.mean(0), x.std(0) + 1e-9
    w = _fit_logreg((x - mean) / std, y, l2=0.01)
    return lambda z: _predict(w, (z - mean) / std) >= 0.5


def precision_recall(pred: np.ndarray, gold: np.ndarray) -> str:
    tp, fp, fn = int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())
    return f"{tp / max(tp + fp, 1):.3f} / {tp / max(tp + fn, 1):.3f}"


# the labelled sets: the written one, three on training-split facts, six on held-out facts
TUNING = ["safety_labelled", "safety_labelled_field_train", "safety_labelled_field_15b_train",
          "safety_labelled_field_templates"]
HELD_OUT = ["safety_labelled_field", "safety_labelled_field_15b", "safety_labelled_field_rerun",
            "safety_labelled_field_trained", "safety_labelled_field_refrecipe", "safety_labelled_field_warnfirst",
            "safety_labelled_field_warnfirst_late"]


def main() -> None:
    sets = {n: [json.loads(x) for x in (FIXTURES / f"{n}.jsonl").read_text().splitlines()] for n in TUNING + HELD_OUT[:-1]}
    sets["safety_labelled_field_warnfirst"], sets["safety_labelled_field_warnfirst_late"] = \
        split_warnfirst(sets["safety_labelled_field_warnfirst"])
    x_all = {n: features(rows) for n, rows in sets.items()}
    y_all = {n: np.array([r["label"] == "pass" for r in rows]) for n, rows in sets.items()}
    facts = np.concatenate([[r["fact_id"] for r in sets[n]] for n in sets])
    x, y = np.concatenate(list(x_all.values())), np.concatenate(list(y_all.values()))
    where = np.concatenate([[n] * len(sets[n]) for n in sets])
    for n in sets:
        print(f"{n}: {len(sets[n])} answers, {int(y_all[n].sum())} pass")
    short = [n.removeprefix("safety_labelled_") for n in HELD_OUT]
    print("precision / recall on each held-out-fact set (field, 15b, rerun = base and teacher answers; "
          "trained = SFT and OPCT models' answers; refrecipe = OPCT's, reference recipe; warnfirst = base, teacher, "
          "SFT and OPCT with the warn-first teacher, seeds 42-44; warnfirst_late = its SFT and OPCT answers, "
          "seeds 45-46)")
    for protocol in ("tuning sets -> held-out", "leave one set out", "leave one fact out"):
        print(f"\n{protocol}\n{'features':24s} " + " ".join(f"{s:>15s}" for s in short))
        for name, cols in SETS.items():
            pred = np.zeros(len(y), bool)
            if protocol == "tuning sets -> held-out":
                train = np.isin(where, TUNING)
                pred[~train] = fit(x[train][:, cols], y[train].astype(float))(x[~train][:, cols])
            else:
                groups = where if protocol == "leave one set out" else facts
                for g in np.unique(groups if protocol == "leave one fact out" else HELD_OUT):
                    held = groups == g
                    pred[held] = fit(x[~held][:, cols], y[~held].astype(float))(x[held][:, cols])
            print(f"{name:24s} " + " ".join(f"{precision_recall(pred[where == n], y[where == n]):>15s}" for n in HELD_OUT))


if __name__ == "__main__":
    main()
