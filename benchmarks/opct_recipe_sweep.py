"""OPCT's recipe on a demo profile: loss type x samples per prompt, judged on validation pairs only.

Every configuration trains OPCT from the same base with the profile's steps, batch and learning rate
(changing only the loss, the samples per prompt and, with --lrs, the learning rate), on the profile's own training pairs. Its learning
curve (the axis's validation metric and the drift KL from the base, every --every steps) is measured
on validation pairs built from the training split's questions that are not trained on, never on the
test pairs. SFT with the profile's settings (at each of --lrs when given) can be added as the
reference row (--with-sft).

Usage:
  python benchmarks/opct_recipe_sweep.py                                 # sycophancy quick: full|letter x 2|8
  python benchmarks/opct_recipe_sweep.py --lrs 1e-5,1e-4                 # and the reference's learning rate
  python benchmarks/opct_recipe_sweep.py --losses full,letter,sampled --samples 2,4,8 --seeds 2 --with-sft
  python benchmarks/opct_recipe_sweep.py --profile default --val-items 32   # the 1.5B model (hours)
  python benchmarks/opct_recipe_sweep.py --profile default --losses full --samples 2 --lrs 1e-5 --with-sft
  python benchmarks/opct_recipe_sweep.py --profile default --data runs/demo/data --methods act --lrs 3e-5,1e-4

--data DIR takes the training and validation pairs of a finished demo run (DIR/train.jsonl, DIR/val.jsonl,
the demo's curve items) instead of building them, which takes minutes on the 1.5B model. --methods
chooses what is swept: OPCT over the loss x samples grid, SFT and ACT at each learning rate.

The run directory (--out) keeps every finished configuration; running the same command again skips
them (and says so). The table gives, per configuration: training seconds (the measurements left
out), s/step, the validation metric and drift KL at the last step (mean over seeds), and the metric
at every curve point.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def validation_pairs(prof, data: Path, seed: int, n: int, tokenizer, model) -> list:
    """`n` sycophancy pairs on training-split questions that train.jsonl does not use (known to the
    base model when the profile keeps known questions only)."""
    from opct.data.schema import read_pairs
    from opct.data.sycophancy import build_split
    from opct.evals.sycophancy import known_pairs
    from opct.study import short_pairs

    trained = {p.meta.get("question_id") for p in read_pairs(data / "train.jsonl")}
    want = 3 * (prof.train_pairs + n)
    built = build_split("train", limit=want, seed=seed, source=prof.question_source)
    fresh, _ = short_pairs(built, tokenizer, prof.max_prompt_tokens, want)
    fresh = [p for p in fresh if p.meta.get("question_id") not in trained]
    if prof.known_min_prob > 0:
        fresh, _ = known_pairs(model, tokenizer, fresh, min_prob=prof.known_min_prob, progress="known questions (val)")
    return fresh[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick", help="sycophancy demo profile (default: %(default)s)")
    p.add_argument("--model", help="another model spec than the profile's")
    p.add_argument("--losses", default="full,letter", help="OPCT loss types (default: %(default)s)")
    p.add_argument("--samples", default="2,8", help="samples per prompt (default: %(default)s)")
    p.add_argument("--lrs", help="learning rates, comma-separated (default: the profile's)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per configuration (default: %(default)s)")
    p.add_argument("--val-items", type=int, default=64, help="validation pairs (default: %(default)s)")
    p.add_argument("--every", type=int, default=2,
                   help="steps between curve points, after steps 1, 2, 4, ... below it (default: %(default)s)")
    p.add_argument("--with-sft", action="store_true",
                   help="add SFT with the profile's settings (at each of --lrs when given); as --methods opct,sft")
    p.add_argument("--methods", default="opct",
                   help="what to sweep: opct (the loss x samples grid), sft, act, comma-separated (default: %(default)s)")
    p.add_argument("--data", type=Path, help="a demo run's data directory to take the pairs from")
    p.add_argument("--out", type=Path, default=Path("runs/sweep-recipe"), help="run directory (default: %(default)s)")
    p.add_argument("--json", type=Path, help="write the table's numbers here too")
    args = p.parse_args(argv)

    from opct.data.schema import write_pairs
    from opct.demo import resolve_profile
    from opct.files import write_json
    from opct.models import load_model, load_tokenizer
    from opct.study import TRAINING_SEED, learning_curve_callback, release_memory
    from opct.trainers.run import train

    _, prof, axis = resolve_profile("sycophancy", args.profile, args.model)
    prof = replace(prof, curve_every=args.every, curve_items=args.val_items)
    data = args.data or args.out / "data"
    done = data / "validation.done"  # build_data writes a val.jsonl of its own first: replaced here
    if args.data:
        if not (data / "train.jsonl").exists() or not (data / "val.jsonl").exists():
            raise SystemExit(f"--data {data}: expected train.jsonl and val.jsonl there (a demo run's data directory)")
    elif not done.exists():
        model, tokenizer = load_model(prof.model)
        axis.build_data(prof, data, 0, model, tokenizer)
        val = validation_pairs(prof, data, 0, args.val_items, tokenizer, model)
        write_pairs(val, data / "val.jsonl")
        done.write_text(f"{len(val)}\n")
        del model
        release_memory()
    tokenizer = load_tokenizer(prof.model)
    n_val = sum(1 for _ in (data / "val.jsonl").open())
    print(f"sweep: {prof.model}, {prof.train_pairs} training pairs, {n_val} validation pairs, "
          f"{prof.train['opct']['max_steps']} steps of {prof.train['opct']['per_device_train_batch_size']} prompts",
          flush=True)

    methods = set(args.methods.split(",")) | ({"sft"} if args.with_sft else set())
    if methods - {"opct", "sft", "act"}:
        raise SystemExit(f"--methods: expected opct, sft or act, got {', '.join(sorted(methods - {'opct', 'sft', 'act'}))}")
    lrs = args.lrs.split(",") if args.lrs else None
    configs = []
    if "opct" in methods:
        configs += [(f"opct-{loss}-k{k}-lr{lr}", "opct", {"loss_type": loss, "num_samples": int(k), "learning_rate": float(lr)})
                    for lr in lrs or [str(prof.train["opct"]["learning_rate"])] for loss in args.losses.split(",")
                    for k in args.samples.split(",")]
    for method in ("sft", "act"):  # at the profile's learning rate, or at each of --lrs
        if method in methods:
            configs += ([(f"{method}-lr{lr}", method, {"learning_rate": float(lr)}) for lr in lrs] if lrs
                        else [(method, method, {})])
    rows = []
    for name, method, change in configs:
        runs = []
        for s in range(args.seeds):
            run_dir = args.out / "runs" / (name + (f"-s{s}" if s else ""))
            if not (run_dir / "summary.json").exists():
                curve = learning_curve_callback(axis, prof, data, tokenizer)
                overrides = {**prof.train[method], **change, **({"seed": TRAINING_SEED + s} if s else {})}
                print(f"\n== {run_dir.name}", flush=True)
                train(method, prof.model, str(data / "train.jsonl"), str(run_dir), overrides, resume=True,
                      callbacks=[curve])
                release_memory()
            else:
                print(f"sweep: {run_dir} is finished, kept", flush=True)
            summary = json.loads((run_dir / "summary.json").read_text())
            curve_points = [json.loads(x) for x in (run_dir / "curve.jsonl").read_text().splitlines()]
            runs.append({"seconds": curve_points[-1]["seconds"], "steps": summary["steps"], "curve": curve_points})
        metric = axis.headline
        last = [r["curve"][-1] for r in runs]
        rows.append({
            "config": name, "seeds": len(runs),
            "train_s": sum(r["seconds"] for r in runs) / len(runs),
            "s_per_step": sum(r["seconds"] / max(r["steps"], 1) for r in runs) / len(runs),
            metric: sum(x[metric] for x in last) / len(last),
            "kl_from_base": sum(x["kl_from_base"] for x in last) / len(last),
            **({"suggested_prob": sum(x["suggested_prob"] for x in last) / len(last)}
               if all(x.get("suggested_prob") is not None for x in last) else {}),
            "curve": {pt["step"]: round(sum(r["curve"][i][metric] for r in runs) / len(runs), 3)
                      for i, pt in enumerate(runs[0]["curve"])},
        })

    metric = axis.headline
    print(f"\n{'config':<26}{'seeds':>6}{'train s':>9}{'s/step':>8}{metric:>17}{'P(sugg.)':>9}{'KL':>8}"
          f"  curve (step: {metric})")
    for r in rows:
        curve = " ".join(f"{k}:{v:.3f}" for k, v in r["curve"].items())
        suggested = f"{r['suggested_prob']:>9.3f}" if "suggested_prob" in r else f"{'-':>9}"
        print(f"{r['config']:<26}{r['seeds']:>6}{r['train_s']:>9.0f}{r['s_per_step']:>8.1f}{r[metric]:>17.3f}"
              f"{suggested}{r['kl_from_base']:>8.4f}  {curve}")
    if args.json:
        write_json(args.json, {"profile": args.profile, "model": prof.model, "validation_pairs": n_val, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
