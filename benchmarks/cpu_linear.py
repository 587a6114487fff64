"""fp32 linears on this CPU: torch's default (MKL) against oneDNN (`opct.kernels.OneDNNLinear`),
with plain weights and with weights in oneDNN's packed layout (`opct.kernels.pack_weight`, as the
OPCT sampling copy holds its merged matrices: every layer but the output layer).

Times every `nn.Linear` of the model once per pass (distinct weights, read from memory as in
decoding) at a few row counts, no gradients, then one sampling `generate` call (4 prompts x 2
samples x 32 tokens) with each kernel. Prints the ratios to MKL, measured in the same run.

    .venv/bin/python benchmarks/cpu_linear.py [--model embedded:smollm2-135m-instruct] [--rows 1,8,64,512]
"""

from __future__ import annotations

import argparse
import time

import torch

from opct.chat import render_prompt
from opct.generation import generate_ids
from opct.kernels import OneDNNLinear, onednn_is_preferred, pack_weight
from opct.models import load_model

KERNELS = ("MKL", "oneDNN", "packed")


def set_kernel(model, kernel: str) -> None:
    head = model.get_output_embeddings()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.__class__ = torch.nn.Linear if kernel == "MKL" else OneDNNLinear
            module.packed = pack_weight(module.weight) if kernel == "packed" and module is not head else None


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
        for kernel in KERNELS:
            set_kernel(model, kernel)
            with torch.no_grad():
                seconds[kernel] = best_of(lambda: [m(inputs[m.in_features]) for m in linears], a.repeats)
        print(f"every layer once, {rows:4d} rows: " + "  ".join(f"{k} {seconds[k] * 1e3:8.1f} ms" for k in KERNELS)
              + "  speed-up " + " ".join(f"{k} {seconds['MKL'] / seconds[k]:.2f}x" for k in KERNELS[1:]))
    prompt = render_prompt(tok, [{"role": "user", "content": "Tell me a long story about a lighthouse keeper. " * 8}])
    seconds, tokens = {}, {}
    for kernel in KERNELS:
        set_kernel(model, kernel)

        def sample():
            torch.manual_seed(0)
            tokens[kernel] = [c.token_ids for c in generate_ids(model, tok, [prompt] * 4, max_new_tokens=32,
                                                                 temperature=1.0, num_samples=2, bf16=False)]
        seconds[kernel] = best_of(sample, a.repeats)
    same = {k: sum(x == y for x, y in zip(tokens["MKL"], tokens[k])) for k in KERNELS[1:]}
    print(f"generate, 4 prompts of {len(prompt)} tokens x 2 samples x 32 tokens (fp32): "
          + "  ".join(f"{k} {seconds[k]:.2f} s" for k in KERNELS)
          + "  (samples identical to MKL's: " + ", ".join(f"{k} {same[k]} of {len(tokens['MKL'])}" for k in same) + ")")
    print("generate speed-up over MKL: " + "  ".join(f"{k} {seconds['MKL'] / seconds[k]:.2f}x" for k in KERNELS[1:]))


if __name__ == "__main__":
    main()
