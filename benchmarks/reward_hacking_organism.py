"""What a reward-hacking organism does with and without the grader tip, on its audit's consistency pairs
(disjoint from its training pairs and from the test tasks, so nothing here is read off the test set).

The contrastive methods' teacher is the organism on the clean prompt: if the organism games graders
there too, consistency training teaches a hack. Printed for each model (the base and the audit's
organism): the outcome counts (games the stated grader / games another grader / does the task /
other) on the wrapped prompts and on the clean ones, and the share of clean answers that do the task.

Usage:
  python benchmarks/reward_hacking_organism.py runs/audit-rh-default [--pairs 64] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="an `opct audit --organism reward_hacking` directory with a built organism")
    ap.add_argument("--pairs", type=int, default=64, help="consistency pairs to answer (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="write the counts here")
    a = ap.parse_args(argv)

    from opct.audit.organisms.reward_hacking import OUTCOMES, outcome
    from opct.data.schema import read_pairs
    from opct.generation import generate
    from opct.models import load_model

    config = json.loads((a.run / "audit_config.json").read_text())
    organism = a.run / "organism" / "model"
    if not (organism / "config.json").exists():
        raise SystemExit(f"{organism} holds no model: build the organism first (opct audit --organism reward_hacking)")
    pairs = read_pairs(a.run / "data" / "consistency.jsonl")[: a.pairs]
    out = {}
    for name, spec in (("base", config["model"]), ("organism", str(organism.resolve()))):
        model, tok = load_model(spec)
        start = time.time()
        for side in ("wrapped", "clean"):
            answers = generate(model, tok, [getattr(p, side) for p in pairs], max_new_tokens=64, progress=f"{name}, {side}")
            counts = Counter(outcome(p, o[0].text) for p, o in zip(pairs, answers))
            out[f"{name}/{side}"] = {o: counts[o] for o in OUTCOMES}
        out[f"{name}/seconds"] = round(time.time() - start, 1)
        del model
    print(f"\n{a.run}: {len(pairs)} consistency pairs; outcome counts")
    print(f"{'model / prompt':<20}" + "".join(f"{o:>24}" for o in OUTCOMES))
    for key, counts in out.items():
        if not key.endswith("seconds"):
            print(f"{key:<20}" + "".join(f"{counts[o]:>24}" for o in OUTCOMES))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
