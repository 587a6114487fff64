"""Does a faster setting learn like the old one? Two OPCT runs, same pairs, seed and config,
differing only in one `OPCTConfig` field (default: `base_dtype`, fp32 against bf16); prints both
learning curves (loss and reverse KL per step) and their gaps.

  .venv/bin/python benchmarks/base_dtype_parity.py                  # SmolLM2, 16 steps of 4 prompts x 2
  .venv/bin/python benchmarks/base_dtype_parity.py --steps 8 --model embedded:qwen2.5-0.5b-instruct
  .venv/bin/python benchmarks/base_dtype_parity.py --setting share_prompt_forward --values false,true
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
    ap.add_argument("--setting", default="base_dtype", help="the OPCTConfig field the two runs differ in")
    ap.add_argument("--values", default="float32,bfloat16", help="its two values, old,new")
    ap.add_argument("--out", help="folder for the two runs (default: a temporary one)")
    opts = ap.parse_args(argv)
    values = [v.strip() for v in opts.values.split(",")]
    if len(values) != 2 or not all(values):
        ap.error(f"--values needs two comma-separated values, got {opts.values!r}")
    old, new = values

    root = Path(opts.out or tempfile.mkdtemp(prefix="opct-parity-"))
    root.mkdir(parents=True, exist_ok=True)
    opct = [sys.executable, "-m", "opct"]
    pairs = root / "pairs.jsonl"
    if not pairs.exists():
        subprocess.run([*opct, "data", "sycophancy", "--split", "train", "--limit", str(4 * opts.steps), "--out",
                        str(pairs)], check=True, capture_output=True)
    print(f"{opts.setting} parity  {time.strftime('%Y-%m-%d %H:%M:%S')}  {opts.model}, {opts.steps} steps of 4 prompts "
          f"x 2 samples, loss {opts.loss}, lr {opts.lr}")
    seconds = {}
    for value in values:
        run = root / f"{opts.setting}={value}"
        if not (run / "summary.json").exists():
            start = time.time()
            subprocess.run([*opct, "train", "opct", "--model", opts.model, "--pairs", str(pairs), "--out", str(run),
                            "--max-steps", str(opts.steps), "--batch-size", "4", "--lr", opts.lr, "--seed", "0",
                            "--save-steps", "1000", "--set", f"{opts.setting}={value}", "--set", f"loss_type={opts.loss}",
                            "--set", "num_samples=2", "--set", "max_new_tokens=48", "--resume"],
                           check=True, capture_output=True)
            seconds[value] = time.time() - start
    print(f"{'step':>4} {'loss ' + old:>14} {'loss ' + new:>14} {'KL ' + old:>12} {'KL ' + new:>12}")
    loss = {v: curve(root / f"{opts.setting}={v}", "loss") for v in values}
    kl = {v: curve(root / f"{opts.setting}={v}", "reverse_kl") for v in values}
    for i, (a, b, c, d) in enumerate(zip(loss[old], loss[new], kl[old], kl[new])):
        print(f"{i + 1:>4} {a:>14.4f} {b:>14.4f} {c:>12.4f} {d:>12.4f}")
    n = min(len(kl[old]), len(kl[new]))
    gaps = [abs(a - b) for a, b in zip(kl[old][:n], kl[new][:n])]
    first, last = lambda xs: sum(xs[:4]) / 4, lambda xs: sum(xs[-4:]) / 4  # noqa: E731
    print(f"reverse KL, mean of the first 4 -> last 4 steps: {old} {first(kl[old]):.4f} -> {last(kl[old]):.4f}, "
          f"{new} {first(kl[new]):.4f} -> {last(kl[new]):.4f}")
    print(f"largest per-step reverse-KL gap {max(gaps):.4f}; mean gap {sum(gaps) / n:.4f}")
    if seconds:
        print("seconds: " + ", ".join(f"{v} {s:.0f}" for v, s in seconds.items()))


if __name__ == "__main__":
    main()
