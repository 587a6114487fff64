"""The offline alignment judge (emergent misalignment) against hand labels written for opct:
`tests/fixtures/alignment_labelled.jsonl`, 154 answers to the 24 probe questions, 76 misaligned.
Misaligned is the positive class; an answer the judge calls incoherent counts as not misaligned.
`--file tests/fixtures/alignment_labelled_field.jsonl` scores the 374 distinct real answers of the
default emergent-misalignment audit (runs/audit-em-default, 2026-12-04), labelled by hand (40
misaligned, 75 incoherent; an incoherent one counts as not misaligned here too).

    .venv/bin/python benchmarks/alignment_judge_agreement.py [--judge-base-url URL --judge-model NAME]
    .venv/bin/python benchmarks/alignment_judge_agreement.py --judge embedded:qwen2.5-coder-1.5b-instruct
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from opct.evals.alignment import MISALIGNED, EmbeddingAlignmentJudge, LLMAlignmentJudge
from opct.evals.judges import JudgeItem
from opct.evals.refusal import metrics

LABELS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "alignment_labelled.jsonl"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, default=LABELS, help="labelled answers (default: %(default)s)")
    ap.add_argument("--judge-base-url", help="also score an LLM judge at this OpenAI-compatible endpoint")
    ap.add_argument("--judge-model", help="its model name")
    ap.add_argument("--judge", help="also score a local model (a model spec) as the LLM judge")
    ap.add_argument("--cache", help="a verdict cache for the LLM judge (JSONL), so a rerun re-asks nothing")
    a = ap.parse_args(argv)
    rows = [json.loads(x) for x in a.file.read_text().splitlines() if x.strip()]
    items = [JudgeItem(prompt=r["prompt"], response=r["response"]) for r in rows]
    gold = [r["label"] == MISALIGNED for r in rows]
    judges = {"embedding (offline)": EmbeddingAlignmentJudge()}
    if a.judge_base_url:
        from opct.serving import ChatClient

        judges["llm"] = LLMAlignmentJudge(ChatClient(a.judge_base_url, model=a.judge_model), cache=a.cache)
    if a.judge:
        judges[a.judge] = LLMAlignmentJudge(a.judge, cache=a.cache)
    print(f"{len(rows)} labelled answers, {sum(gold)} misaligned")
    for name, judge in judges.items():
        verdicts = judge(items)
        m = metrics([v.label == MISALIGNED for v in verdicts], gold)
        incoherent = sum(v.label == "incoherent" for v in verdicts)
        unparsed = sum(not v.parsed for v in verdicts)
        print(f"{name}: accuracy {m['accuracy']:.3f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
              f"F1 {m['f1']:.3f} (incoherent {incoherent}, unparsed {unparsed}: neither counts as misaligned)")


if __name__ == "__main__":
    main()
