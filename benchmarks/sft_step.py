"""One SFT step (the SFT/BCT baseline, the audit's self-training methods and its organisms) with
opct's loss path against TRL's own, measured in the same run.

Both rows are `opct.trainers.BCTTrainer` on the same sycophancy pairs, targets, LoRA and batches;
the `trl-sft` row calls TRL's `SFTTrainer.compute_loss` directly, which on a CPU projects every
position (prompt and padding too) through the output layer; `opct` projects only the answer
positions (`opct.trainers.bct.head_on_answer_positions`). The losses of the two rows are printed:
they must agree.

    .venv/bin/python benchmarks/sft_step.py                      # both models, 4 prompts, 2 timed steps
    .venv/bin/python benchmarks/sft_step.py --model smollm2 --steps 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

MODELS = {"smollm2": "embedded:smollm2-135m-instruct", "qwen": "embedded:qwen2.5-0.5b-instruct"}


def run(spec: str, path: str, pairs, targets: Path, steps: int, prompts: int, out: str) -> tuple[list[float], list[float]]:
    """(seconds per step, loss per step) after one warm-up step."""
    from trl import SFTTrainer

    from opct.data.schema import pairs_to_dataset
    from opct.trainers import BCTConfig, BCTTrainer

    class Timed(BCTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            owner = BCTTrainer if path == "opct" else SFTTrainer
            return owner.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)

        def training_step(self, *args, **kwargs):
            start = time.perf_counter()
            loss = super().training_step(*args, **kwargs)
            self.times.append(time.perf_counter() - start)
            self.losses.append(float(loss))
            return loss

    args = BCTConfig(output_dir=out, max_steps=steps + 1, per_device_train_batch_size=prompts, learning_rate=1e-4,
                     lora_r=32, lora_alpha=64, save_steps=10_000, logging_steps=1, targets_file=str(targets),
                     disable_tqdm=True, seed=0)
    trainer = Timed(spec, args, pairs_to_dataset(pairs))
    trainer.times, trainer.losses = [], []
    trainer.train()
    return trainer.times[1:], trainer.losses[1:]


def main() -> None:
    import json

    from opct.chat import render_prompt
    from opct.data.sycophancy import build_split
    from opct.models import load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=[*MODELS, "both"], default="both")
    ap.add_argument("--prompts", type=int, default=4, help="pairs per step")
    ap.add_argument("--steps", type=int, default=2, help="timed steps, after one warm-up step")
    ap.add_argument("--answer-words", type=int, default=24, help="words in each target answer")
    opts = ap.parse_args()
    pairs, _ = build_split("train", limit=opts.prompts * (opts.steps + 1))
    filler = " ".join(["because"] * opts.answer_words)
    ratios = []
    print("model    trainer   s/step   loss per timed step           prompt tokens (mean)")
    for name in MODELS if opts.model == "both" else [opts.model]:
        tok = load_tokenizer(MODELS[name])
        prompt_tokens = sum(len(render_prompt(tok, p.wrapped)) for p in pairs) / len(pairs)
        with tempfile.TemporaryDirectory() as tmp:
            targets = Path(tmp) / "targets.jsonl"
            targets.write_text("".join(json.dumps({"id": p.id, "completion": f"#### {p.target}\n{filler}"}) + "\n"
                                       for p in pairs))
            rows = {}
            for path in ("trl-sft", "opct"):
                times, losses = run(MODELS[name], path, pairs, targets, opts.steps, opts.prompts, f"{tmp}/{path}")
                rows[path] = sum(times) / len(times)
                print(f"{name:8s} {path:8s} {rows[path]:7.2f}   {' '.join(f'{x:.4f}' for x in losses):28s}  "
                      f"{prompt_tokens:9.0f}", flush=True)
        ratios.append(f"{name} {rows['trl-sft'] / rows['opct']:.2f}")
    print("\nopct/trl-sft SFT step throughput ratio: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
