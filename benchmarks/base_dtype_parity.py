"""Does a bf16 frozen base learn like the fp32 one? Two OPCT runs, same pairs, seed and config,
differing only in `base_dtype`; prints both learning curves (loss and reverse KL per step) and
their gaps.

  .venv/bin/python benchmarks/base_dtype_parity.py                  # SmolLM2, 16 steps of 4 prompts x 2
  .venv/bin/python benchmarks/base_dtype_parity.py --steps 8 --model embedded:qwen2.5-0.5b-instruct
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def curve(run: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [r[key] for r in rows if key in r and "loss" in r]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--loss", default="full", help="loss_type (the sycophancy demos use full)")
    ap.add_argument("--lr", default="1e-4")
    ap.add_argument("--out", help="folder for the two runs (default: a temporary one)")
    opts = ap.parse_args(argv)

    root = Path(opts.out or tempfile.mkdtemp(prefix="opct-parity-"))
    root.mkdir(parents=True, exist_ok=True)
    opct = [sys.executable, "-m", "opct"]
    pairs = root / "pairs.jsonl"
    if not pairs.exists():
        subprocess.run([*opct, "data", "sycophancy", "--split", "train", "--limit", str(4 * opts.steps), "--out",
                        str(pairs)], check=True, capture_output=True)
    print(f"base dtype parity  {time.strftime('%Y-%m-%d %H:%M:%S')}  {opts.model}, {opts.steps} steps of 4 prompts x 2 "
          f"samples, loss {opts.loss}, lr {opts.lr}")
    seconds = {}
    for dtype in ("float32", "bfloat16"):
        run = root / dtype
        if not (run / "summary.json").exists():
            start = time.time()
            subprocess.run([*opct, "train", "opct", "--model", opts.model, "--pairs", str(pairs), "--out", str(run),
                            "--max-steps", str(opts.steps), "--batch-size", "4", "--lr", opts.lr, "--seed", "0",
                            "--save-steps", "1000", "--set", f"base_dtype={dtype}", "--set", f"loss_type={opts.loss}",
                            "--set", "num_samples=2", "--set", "max_new_tokens=48", "--resume"],
                           check=True, capture_output=True)
            seconds[dtype] = time.time() - start
    print(f"{'step':>4} {'loss fp32':>10} {'loss bf16':>10} {'KL fp32':>9} {'KL bf16':>9}")
    loss = {d: curve(root / d, "loss") for d in ("float32", "bfloat16")}
    kl = {d: curve(root / d, "reverse_kl") for d in ("float32", "bfloat16")}
    for i, (a, b, c, d) in enumerate(zip(loss["float32"], loss["bfloat16"], kl["float32"], kl["bfloat16"])):
        print(f"{i + 1:>4} {a:>10.4f} {b:>10.4f} {c:>9.4f} {d:>9.4f}")
    n = min(len(kl["float32"]), len(kl["bfloat16"]))
    gaps = [abs(a - b) for a, b in zip(kl["float32"][:n], kl["bfloat16"][:n])]
    first, last = lambda xs: sum(xs[:4]) / 4, lambda xs: sum(xs[-4:]) / 4  # noqa: E731
    print(f"reverse KL, mean of the first 4 -> last 4 steps: fp32 {first(kl['float32']):.4f} -> {last(kl['float32']):.4f}, "
          f"bf16 {first(kl['bfloat16']):.4f} -> {last(kl['bfloat16']):.4f}")
    print(f"largest per-step reverse-KL gap {max(gaps):.4f}; mean gap {sum(gaps) / n:.4f}")
    if seconds:
        print("seconds: " + ", ".join(f"{d} {s:.0f}" for d, s in seconds.items()))


if __name__ == "__main__":
    main()
