"""fp32 linears on this CPU: torch's default (MKL) against oneDNN (`opct.kernels.OneDNNLinear`).

Times every `nn.Linear` of the model once per pass (distinct weights, read from memory as in
decoding) at a few row counts, no gradients, then one sampling `generate` call (4 prompts x 2
samples x 32 tokens) with each kernel. Prints each pair's ratio, measured in the same run.

    .venv/bin/python benchmarks/cpu_linear.py [--model embedded:smollm2-135m-instruct] [--rows 1,8,64,512]
"""

from __future__ import annotations

import argparse
import time

import torch

from opct.chat import render_prompt
from opct.generation import generate_ids
from opct.kernels import OneDNNLinear, onednn_is_preferred
from opct.models import load_model


def set_kernel(model, onednn: bool) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.__class__ = OneDNNLinear if onednn else torch.nn.Linear


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN builds its kernel for the shape)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--rows", default="1,8,64,512", help="comma-separated row counts for the layer pass")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    model, tok = load_model(a.model)
    model.requires_grad_(False)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    print(f"{a.model}: {len(linears)} linear layers; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; opct's rule picks "
          f"{'oneDNN' if onednn_is_preferred() else 'MKL'} here")
    for rows in [int(r) for r in a.rows.split(",")]:
        inputs = {m.in_features: torch.randn(rows, m.in_features) for m in linears}
        seconds = {}
        for name, onednn in (("MKL", False), ("oneDNN", True)):
            set_kernel(model, onednn)
            with torch.no_grad():
                seconds[name] = best_of(lambda: [m(inputs[m.in_features]) for m in linears], a.repeats)
        print(f"every layer once, {rows:4d} rows: MKL {seconds['MKL'] * 1e3:8.1f} ms  oneDNN "
              f"{seconds['oneDNN'] * 1e3:8.1f} ms  oneDNN speed-up {seconds['MKL'] / seconds['oneDNN']:.2f}x")
    prompt = render_prompt(tok, [{"role": "user", "content": "Tell me a long story about a lighthouse keeper. " * 8}])
    seconds, tokens = {}, {}
    for name, onednn in (("MKL", False), ("oneDNN", True)):
        set_kernel(model, onednn)

        def sample():
            torch.manual_seed(0)
            tokens[name] = [c.token_ids for c in generate_ids(model, tok, [prompt] * 4, max_new_tokens=32,
                                                               temperature=1.0, num_samples=2, bf16=False)]
        seconds[name] = best_of(sample, a.repeats)
    same = sum(x == y for x, y in zip(tokens["MKL"], tokens["oneDNN"]))
    print(f"generate, 4 prompts of {len(prompt)} tokens x 2 samples x 32 tokens (fp32): MKL {seconds['MKL']:.2f} s  "
          f"oneDNN {seconds['oneDNN']:.2f} s  ({same} of {len(tokens['MKL'])} samples identical)")
    print(f"oneDNN/MKL generate speed-up: {seconds['MKL'] / seconds['oneDNN']:.2f}x")


if __name__ == "__main__":
    main()
