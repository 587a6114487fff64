"""Does GRPO training make the RL attacker better than the same attacker untrained?

Each variant trains the attacker (`opct.attacks.rl.train_rl_attacker`) against one target on 8
training behaviours, then attacks validation behaviours: 12 other behaviours of the *training*
split (never the held-out split the jailbreak tables report). The control row is the untrained
attacker with the same budget. Per row: validation ASR by the offline judge, the share of best
replies on the behaviour's topic, the mean best score, and the training reward over the first and
last five steps (from the run's queries.jsonl). Best prompts and replies go to OUT/VARIANT/best.jsonl
for reading by hand.

  variant = steps[:generations:prompts_per_step[:flags]]   (generations 4 and prompts 1 by default)
    flag s: each attacker prompt is asked for with one of `opct.attacks.rl.STRATEGIES`
    flag d: the soft (dense) on-topic reward, `TargetReward(soft=True)`
    flag f: the attacker writes an opening and the behaviour follows it verbatim (`frame=True`)

    .venv/bin/python benchmarks/rl_attacker.py [--target embedded:smollm2-135m-instruct]
        [--variants 0,20:4:1,20:4:1:s] [--budget 8] [--lr 1e-4] [--out runs/rl-attacker]

A variant with 0 steps is the untrained control. Finished variants are kept in --out and skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ATTACKER = "embedded:smollm2-135m-instruct"


def reward_curve(queries: Path, k: int = 5) -> dict:
    by_step: dict[int, list[float]] = {}
    for line in queries.read_text().splitlines():
        q = json.loads(line)
        if q["reward"] is not None and q["step"] is not None:
            by_step.setdefault(int(q["step"]), []).append(float(q["reward"]))
    means = [statistics.fmean(by_step[s]) for s in sorted(by_step)]
    return {"first": statistics.fmean(means[:k]), "last": statistics.fmean(means[-k:]), "per_step": means}


def main() -> None:
    from opct.attacks.rl import on_topic, rl_attack, train_rl_attacker
    from opct.commands.common import fixed_sample, split_behaviors_arg
    from opct.evals.jailbreak import adaptive_metrics
    from opct.evals.refusal import EmbeddingRefusalJudge
    from opct.models import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--variants", default="0,20:4:1", help="comma-separated steps[:generations:prompts[:flags]]")
    ap.add_argument("--lr", type=float, default=1e-4, help="the attacker's GRPO learning rate")
    ap.add_argument("--budget", type=int, default=8, help="target queries per validation behaviour (2 rounds)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/rl-attacker")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train_all, _ = split_behaviors_arg("train", "harmbench,advbench,strongreject")
    train_b = fixed_sample(train_all, 8)
    taken = {b.id for b in train_b}
    val_b = fixed_sample([b for b in train_all if b.id not in taken], 12)
    target, tok = load_model(a.target)
    judge = EmbeddingRefusalJudge(cache=out / "verdicts.jsonl")
    print(f"target {a.target}; {len(train_b)} training and {len(val_b)} validation behaviours (training split)")
    for variant in [v.strip() for v in a.variants.split(",") if v.strip()]:
        done = out / variant.replace(":", "-") / "result.json"
        if done.exists():
            print(f"{variant}: kept from {done}")
            continue
        parts = variant.split(":")
        if not all(x.isdigit() for x in parts[:3]) or len(parts) > 4:
            raise SystemExit(f"variant {variant!r}: expected steps[:generations:prompts[:flags]], e.g. 20:4:1:f")
        steps, gens, per_step = [int(x) for x in parts[:3]] + [4, 1][len(parts) - 1:]
        flags = parts[3] if len(parts) > 3 else ""
        if set(flags) - set("sdf"):
            raise SystemExit(f"variant {variant!r}: unknown flags {flags!r} (s: strategies, d: soft reward, f: frame)")
        strategies = "s" in flags
        run_dir = done.parent
        row: dict = {"variant": variant, "steps": steps, "generations": gens, "prompts_per_step": per_step,
                     "strategies": strategies, "soft_reward": "d" in flags, "frame": "f" in flags, "lr": a.lr}
        started = time.time()
        attacker = ATTACKER
        if steps:
            trained = train_rl_attacker(ATTACKER, target, tok, train_b, judge, run_dir, steps=steps,
                                        num_generations=gens, prompts_per_step=per_step, seed=a.seed,
                                        max_new_tokens=a.max_new_tokens, strategies=strategies,
                                        soft_relevance="d" in flags, frame="f" in flags, learning_rate=a.lr)
            attacker = trained["adapter"]
            row["reward"] = reward_curve(run_dir / "queries.jsonl")
        row["train_s"] = round(time.time() - started, 1)
        started = time.time()
        result = rl_attack(attacker, target, tok, val_b, judge, samples=a.budget // 2, rounds=2, seed=a.seed,
                           max_new_tokens=a.max_new_tokens, strategies=strategies, frame="f" in flags)
        row["eval_s"] = round(time.time() - started, 1)
        rows = result["rows"]
        m = adaptive_metrics(rows)
        topical = on_topic([r["behavior"] for r in rows], [r["best_response"] or "" for r in rows])
        row.update(asr=m["attack_success_rate"], best_score_mean=m["judge_score_mean"]["value"],
                   best_on_topic=sum(topical) / len(topical))
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / "best.jsonl").open("w", encoding="utf-8") as f:
            for r, t in zip(rows, topical):
                f.write(json.dumps({"behavior": r["behavior"], "cracked": r["cracked"], "score": r["best_score"],
                                    "on_topic": t, "prompt": r["best_prompt"], "response": r["best_response"]},
                                   ensure_ascii=False) + "\n")
        done.write_text(json.dumps(row, indent=1))
        print(json.dumps({k: v for k, v in row.items() if k != "reward"}), flush=True)
    print("\n| variant | train s | eval s | reward, first 5 -> last 5 steps | validation ASR (judge) | best replies on topic | mean best score |")
    print("|---|---|---|---|---|---|---|")
    for variant in [v.strip() for v in a.variants.split(",") if v.strip()]:
        r = json.loads((out / variant.replace(":", "-") / "result.json").read_text())
        rw = f"{r['reward']['first']:.2f} -> {r['reward']['last']:.2f}" if "reward" in r else "-"
        asr = r["asr"]
        print(f"| {variant} | {r['train_s']} | {r['eval_s']} | {rw} | {asr['value']:.3f} [{asr['ci_low']:.3f}, "
              f"{asr['ci_high']:.3f}] | {r['best_on_topic']:.2f} | {r['best_score_mean']:.3f} |")


if __name__ == "__main__":
    main()
