"""How long does one GRPO step of the RL attacker take: TRL's CPU defaults against opct's settings?

Trains the embedded SmolLM2 attacker (`opct.attacks.rl.train_rl_attacker`, frames, 4 generations of
one training behaviour a step, the quick jailbreak profile's shape) against a target for a few steps,
once per setting, in fresh directories. Prints the mean `step_time` TRL logs (the first step, a
warm-up, left out), the rewards (the same seed gives the same samples, so they show whether a
setting changed what is learnt), and the throughput ratio of each setting against TRL's defaults
(fp32 with gradient checkpointing, sampling through peft's adapter): bf16 autocast without
checkpointing, then that with the attacker's prompts sampled from a merged bf16 copy (opct's default).

    .venv/bin/python benchmarks/grpo_step.py [--target embedded:smollm2-135m-instruct] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SETTINGS = {"trl-default (fp32, checkpointing)": {"bf16": False, "gradient_checkpointing": True,
                                                  "sample_from_copy": False},
            "bf16, no checkpointing": {"bf16": True, "gradient_checkpointing": False, "sample_from_copy": False},
            "opct (bf16, no checkpointing, merged sampling copy)": {"bf16": True, "gradient_checkpointing": False,
                                                                    "sample_from_copy": True}}


def main() -> None:
    from opct.attacks.rl import train_rl_attacker
    from opct.commands.common import fixed_sample, split_behaviors_arg
    from opct.evals.refusal import EmbeddingRefusalJudge
    from opct.models import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=4, help="GRPO steps per setting, the first a warm-up")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="the target's reply length")
    args = ap.parse_args()

    target, tok = load_model(args.target)
    behaviors = fixed_sample(split_behaviors_arg("train", "harmbench,advbench,strongreject")[0], 8)
    judge = EmbeddingRefusalJudge()
    step_s = {}
    for name, setting in SETTINGS.items():
        with tempfile.TemporaryDirectory() as out:
            log = train_rl_attacker("embedded:smollm2-135m-instruct", target, tok, behaviors, judge, out,
                                    steps=args.steps, max_new_tokens=args.max_new_tokens, frame=True, resume=False,
                                    **setting)["log"]
        times = [h["step_time"] for h in log if "step_time" in h][1:]
        step_s[name] = statistics.fmean(times)
        rewards = [round(h["reward"], 3) for h in log if "reward" in h]
        print(f"{name}: {step_s[name]:.2f} s per step (steps 2-{args.steps}); rewards {rewards}", flush=True)
    names = list(step_s)
    ratios = "; ".join(f"{name} {step_s[names[0]] / step_s[name]:.2f}" for name in names[1:])
    print(f"GRPO attacker step, throughput over trl-default: {ratios}")


if __name__ == "__main__":
    main()
