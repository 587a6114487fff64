"""A finished demo's models on capabilities that need generating: math word problems solved step by
step, and verifiable instructions, answered greedily by the base and every model the run trained.

The demo's capability panel reads MMLU from letter probabilities, which a model can still pass after
it has lost its step-by-step answers; the reference's capability loss (SFT down up to 28 points on
MATH-500) is in generated solutions. Each model's answers are saved as they come (a re-run resumes);
the table pools the seeds; each method's change from the base, and OPCT against SFT, are paired over
problems and seeds, as the demo's verdicts are.

Usage:
  python benchmarks/capability_retest.py runs/demo-1206c3                  # 32 problems, 20 instructions, 512 tokens
  python benchmarks/capability_retest.py RUN --math 16 --ifeval 0 --methods sft,opct
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TASKS = {"math": "math accuracy (generated word problems)", "ifeval": "instruction following (every check passed)"}


def answer(model, tokenizer, args) -> dict[str, dict[str, float]]:
    """{task: {item id: 1.0 or 0.0}} and the records, for one model."""
    from opct.evals.instructions import instruction_accuracy
    from opct.evals.math import generate_word_problems, math_accuracy

    records = {}
    if args.math:
        problems = generate_word_problems(args.math, seed=args.seed, level=args.levels)
        records["math"] = math_accuracy(model, tokenizer, problems, max_new_tokens=args.max_new_tokens,
                                        progress="math", return_records=True)["records"]
    if args.ifeval:
        records["ifeval"] = [{**r, "correct": r["passed"]} for r in instruction_accuracy(
            model, tokenizer, n=args.ifeval, max_new_tokens=args.max_new_tokens, progress="instructions",
            return_records=True)["records"]]
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished `opct demo` run directory")
    p.add_argument("--math", type=int, default=32, help="generated word problems (0 = none; default: %(default)s)")
    p.add_argument("--levels", default="1,2", help="word-problem levels (default: %(default)s, as the quick suite)")
    p.add_argument("--ifeval", type=int, default=20, help="verifiable instructions (0 = none; default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=512,
                   help="per answer (default: %(default)s; at 256 the 1.5B model had 2-6 of 32 solutions cut off)")
    p.add_argument("--methods", help="comma-separated methods of the run (default: every one)")
    p.add_argument("--seed", type=int, default=0, help="draws the word problems (default: %(default)s)")
    p.add_argument("--out", type=Path, help="answers and results (default: RUN/capability-retest)")
    args = p.parse_args(argv)
    args.levels = tuple(int(x) for x in args.levels.split(","))

    from opct.models import load_model
    from opct.study import compare_methods, release_memory, trained_runs
    from opct.evals.stats import seeded_summary

    settings_path = args.run / "demo_config.json"
    if not settings_path.exists():
        raise SystemExit(f"{args.run}: no demo_config.json; give a finished `opct demo` run directory")
    settings = json.loads(settings_path.read_text())
    runs = trained_runs(args.run)
    wanted = args.methods.split(",") if args.methods else list(runs)
    if missing := [m for m in wanted if m not in runs]:
        raise SystemExit(f"{args.run}: no trained run of {', '.join(missing)} (found: {', '.join(runs) or 'none'})")
    out = args.out or args.run / "capability-retest"
    out.mkdir(parents=True, exist_ok=True)
    asked = {"math": args.math, "levels": list(args.levels), "ifeval": args.ifeval,
             "max_new_tokens": args.max_new_tokens, "seed": args.seed}
    tasks = [t for t in TASKS if asked[t]]

    base_model, tokenizer = load_model(settings["model"])
    models = {"base": [settings["model"]], **{m: [str(d) for d in runs[m]] for m in wanted}}
    scores: dict[str, dict[str, list[dict[str, float]]]] = {t: {} for t in tasks}
    cut_off: dict[str, dict[str, list[int | None]]] = {t: {} for t in tasks}
    for method, specs in models.items():
        for spec in specs:
            name = "base" if method == "base" else Path(spec).name
            path = out / f"{name}.json"
            saved = json.loads(path.read_text()) if path.exists() else {}
            if saved.get("settings") != asked:
                if saved:
                    print(f"{name}: answered with other settings; answering again", flush=True)
                start = time.time()
                model = base_model if method == "base" else load_model(spec)[0]
                saved = {"settings": asked, "records": answer(model, tokenizer, args),
                         "seconds": round(time.time() - start, 1)}
                path.write_text(json.dumps(saved, indent=1))
                if model is not base_model:
                    del model
                    release_memory()
            else:
                print(f"{name}: answers from {path} ({saved['seconds']} s when made)", flush=True)
            for t in tasks:
                scores[t].setdefault(method, []).append({r["id"]: float(r["correct"]) for r in saved["records"][t]})
                # answers stopped by the token limit (graded as they stand); None: answered before it was recorded
                finished = [r.get("finished") for r in saved["records"][t]]
                cut_off[t].setdefault(method, []).append(None if None in finished else finished.count(False))

    results: dict[str, object] = {"settings": asked, "run": str(args.run), "tasks": {}}
    cell = lambda m: f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"  # noqa: E731
    for t in tasks:
        print(f"\n{TASKS[t]}\n\n| Method | seeds | accuracy | change from the base | cut off | n |\n|---|---|---|---|---|---|")
        per_method = {}
        for method, per_seed in scores[t].items():
            acc = seeded_summary(per_seed)
            change = None
            if method != "base":
                change = compare_methods(method, "base", per_seed, scores[t]["base"] * len(per_seed), TASKS[t], "higher")
            per_method[method] = {"accuracy": acc, "change_from_base": change, "cut_off_per_seed": cut_off[t][method]}
            delta = change["difference"] if change else None
            print(f"| {method} | {len(per_seed)} | {cell(acc)} | "
                  + (f"{delta['value']:+.3f} [{delta['ci_low']:+.3f}, {delta['ci_high']:+.3f}]" if delta else "–")
                  + f" | {'–' if None in cut_off[t][method] else sum(cut_off[t][method])} | {acc['n']} |")
        verdict = None
        if "opct" in scores[t] and "sft" in scores[t]:
            verdict = compare_methods("opct", "sft", scores[t]["opct"], scores[t]["sft"], TASKS[t], "higher")
            print("\n" + verdict["sentence"])
        for method, block in per_method.items():
            if block["change_from_base"]:
                print(block["change_from_base"]["sentence"])
        results["tasks"][t] = {"methods": per_method, "opct_vs_sft": verdict}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
