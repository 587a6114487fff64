"""One organism's audit with every method given a different training budget (steps, learning rate)
than its profile's, to ask whether a method that did not move the organism does so with more.

The organism is built exactly as the profile builds it (same data seed, same organism training), so
the run differs from `opct audit --profile P --organism O` only in the methods' steps and learning
rate. The audit prints its usual effects table and writes its usual report in --out.
Read the result as one more budget, not as a chosen setting: the test split is the audit's own.

Usage:
  python benchmarks/audit_method_budget.py --organism reward_hacking --profile default \
      --steps 64 --lr 1e-5 --methods greedy,bct,opct --out runs/audit-rh-64steps [--resume]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--organism", required=True)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--steps", type=int, required=True, help="training steps of every method")
    ap.add_argument("--lr", type=float, help="learning rate of every method (default: the profile's)")
    ap.add_argument("--methods", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per method")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)

    from opct.audit.profiles import PROFILES
    from opct.audit.study import run_audit

    base = PROFILES[a.profile].for_organism(a.organism)
    train = {**base.method_train, "max_steps": a.steps, "save_steps": max(1, a.steps // 2),
             **({"learning_rate": a.lr} if a.lr else {})}
    print(f"{a.organism} on the {a.profile} profile, every method {a.steps} steps at lr {train['learning_rate']} "
          f"(profile: {base.method_train['max_steps']} at {base.method_train['learning_rate']})", flush=True)
    run_audit(a.organism, replace(base, method_train=train), out=a.out, methods=a.methods, resume=a.resume,
              seeds=a.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
