"""How often the study's paired verdicts fire when two methods do not differ, and when they do.

Simulated per-item 0/1 scores of two methods on N items (and S training seeds): each item differs
between the methods with probability q; under "no difference" a differing item favours either
method with chance 1/2, under "a difference" method A is the worse one with chance `--lean`. For
each setting the script prints the share of simulations in which a verdict is called (the 95%
interval excludes 0), by the bootstrap alone (the rule before 2026-12-06) and by today's rule
(`opct.evals.stats.seeded_paired_diff`: the interval also covers Newcombe's paired interval, and
the sign-flip test must agree at p < 0.05). Under no difference that share is the false-verdict
rate, which should stay at or below 5%.

Usage:
  python benchmarks/verdict_calibration.py                  # the default grid, 1000 simulations each (about a minute)
  python benchmarks/verdict_calibration.py --sims 200 --items 76 --seeds 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from opct.evals.stats import _seeded_bootstrap, seeded_paired_diff  # noqa: E402


def simulate(rng: np.random.Generator, items: int, seeds: int, q: float, lean: float, base_rate: float):
    """Per-seed {item: score} dicts for methods A and B."""
    ids = [f"q{i}" for i in range(items)]
    a, b = [], []
    for _ in range(seeds):
        shared = rng.random(items) < base_rate
        differs = rng.random(items) < q
        a_worse = rng.random(items) < lean  # A scores 1 (e.g. sycophantic) where B scores 0
        sa = np.where(differs, a_worse, shared).astype(float)
        sb = np.where(differs, ~a_worse, shared).astype(float)
        a.append(dict(zip(ids, sa)))
        b.append(dict(zip(ids, sb)))
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=1000)
    ap.add_argument("--items", type=int, nargs="+", default=[128, 24])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--q", type=float, nargs="+", default=[0.03, 0.1, 0.3], help="share of items that differ")
    ap.add_argument("--lean", type=float, default=0.85, help="under a difference: chance a differing item goes A's way")
    ap.add_argument("--base-rate", type=float, default=0.5, help="rate of the items both methods score alike")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{a.sims} simulations per row; a verdict = the 95% interval excludes 0 (today: and sign-flip p < 0.05)")
    print(f"{'items':>5} {'seeds':>5} {'q':>5} {'case':>13} {'bootstrap alone':>16} {'today':>6}")
    for items in a.items:
        for seeds in a.seeds:
            for q in a.q:
                for case, lean in (("no difference", 0.5), (f"lean {a.lean:.2f}", a.lean)):
                    old = new = 0
                    for _ in range(a.sims):
                        sa, sb = simulate(rng, items, seeds, q, lean, a.base_rate)
                        d = seeded_paired_diff(sa, sb)
                        ids = sorted(sa[0])
                        diff = np.array([[s[i] for i in ids] for s in sa]) - np.array([[s[i] for i in ids] for s in sb])
                        boot = _seeded_bootstrap(diff, 1000, 0.05, 0)
                        old += boot["ci_low"] > 0 or boot["ci_high"] < 0
                        new += (d["ci_low"] > 0 or d["ci_high"] < 0) and d["p"] < 0.05
                    print(f"{items:>5} {seeds:>5} {q:>5.2f} {case:>13} {old / a.sims:>16.3f} {new / a.sims:>6.3f}",
                          flush=True)


if __name__ == "__main__":
    main()
