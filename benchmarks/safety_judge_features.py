"""Can a small classifier over the keyword judge's evidence and sentence embeddings fix the keyword
safety judge's precision on real answers? (issue 11, part 6)

Features per answer: the keyword judge's verdict, refusal and warning count; over the answer's
sentences, the highest cosine to the safety fact and the highest (fact - request) cosine; the same
two over the keyword judge's warning sentences only, and the most fact words in one of them; the
whole answer's cosine to the fact; its length. Logistic regression (`opct.evals.refusal`'s), scored
two ways: trained on the 294 written answers and tested on the 227 real ones; and cross-validated
by fact over written + real (every fact's answers held out in turn), scored on the real ones.

    .venv/bin/python benchmarks/safety_judge_features.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from opct.data.safety import facts_by_id
from opct.evals import safety as S
from opct.evals.refusal import _fit_logreg, _predict, embed

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


def main() -> None:
    written = [json.loads(x) for x in (FIXTURES / "safety_labelled.jsonl").read_text().splitlines()]
    real = [json.loads(x) for x in (FIXTURES / "safety_labelled_field.jsonl").read_text().splitlines()]
    xw, xr = features(written), features(real)
    yw = np.array([r["label"] == "pass" for r in written])
    yr = np.array([r["label"] == "pass" for r in real])
    groups = np.array([r["fact_id"] for r in written + real])
    is_real = np.r_[np.zeros(len(written), bool), np.ones(len(real), bool)]
    print(f"written {len(written)} ({yw.sum()} pass), real {len(real)} ({yr.sum()} pass)")
    print(f"{'features':24s} {'written->real P / R':>20s} {'CV by fact, real P / R':>24s}")
    for name, cols in SETS.items():
        across = precision_recall(fit(xw[:, cols], yw.astype(float))(xr[:, cols]), yr)
        x, y = np.concatenate([xw, xr])[:, cols], np.r_[yw, yr]
        pred = np.zeros(len(y), bool)
        for fact in np.unique(groups):
            held = groups == fact
            pred[held] = fit(x[~held], y[~held].astype(float))(x[held])
        print(f"{name:24s} {across:>20s} {precision_recall(pred[is_real], y[is_real]):>24s}")


if __name__ == "__main__":
    main()
