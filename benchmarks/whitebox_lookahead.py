"""The white-box attackers with their restarts answered one at a time and with lookahead.

`opct.attacks.whitebox.whitebox_attack` judges one reply per query. With `lookahead` L > 1, up to
L - 1 queries likely to come next (the next behaviours' first queries after a transferred first
query, else this behaviour's next restarts) are checked ahead, one target pass each, and while each
already makes greedy decoding start with the target, their replies are decoded in one batch with the
current one. A reply decoded ahead serves only the query it was made for, so the searches and the
pass counts are the sequential attack's.
The replies themselves can differ: greedy decoding in bf16 flips near-ties when the batch layout
changes, and a flip that changes a verdict changes what follows (the next behaviour's transfer).

Both settings run on the same model in one process, over the jailbreak eval's held-out behaviours
(the fixed sample `opct eval jailbreak --limit N` takes) with the quick profile's budgets (random
suffix 64 passes, GCG 67, 48 new tokens) and the offline refusal judge. Prints per attacker and
setting: seconds, replies decoded (used + dropped), cracks, and how many transcripts match the
sequential one in suffixes and in replies; then the speed-ups.

    .venv/bin/python benchmarks/whitebox_lookahead.py [--model embedded:smollm2-135m-instruct]
        [--behaviours 12] [--lookahead 4] [--attackers random_suffix,gcg]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from opct.attacks.whitebox import whitebox_attack
from opct.axes.jailbreak import PROFILES
from opct.commands.common import fixed_sample, split_behaviors_arg
from opct.evals.refusal import EmbeddingRefusalJudge
from opct.models import load_model

BUDGETS = {name: PROFILES["quick"].attackers[name]["budget"] for name in ("random_suffix", "gcg")}  # 64, 67


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--behaviours", type=int, default=12)
    ap.add_argument("--lookahead", type=int, default=4)
    ap.add_argument("--attackers", default="random_suffix,gcg")
    ap.add_argument("--new-tokens", type=int, default=48)
    a = ap.parse_args()
    behaviours, _ = split_behaviors_arg("heldout", "harmbench,advbench,strongreject")
    behaviours = fixed_sample(behaviours, a.behaviours)
    model, tok = load_model(a.model)
    model.requires_grad_(False)
    print(f"{a.model}: {len(behaviours)} held-out behaviours, {a.new_tokens} new tokens, lookahead 1 against "
          f"{a.lookahead}", flush=True)
    speedups = []
    for attacker in a.attackers.split(","):
        runs = {}
        for lookahead in (1, a.lookahead):
            with tempfile.TemporaryDirectory() as cache:  # a fresh verdict cache: both settings judge every reply
                judge = EmbeddingRefusalJudge(cache=Path(cache) / "verdicts.jsonl")
                start = time.perf_counter()
                out = whitebox_attack(model, tok, behaviours, judge, attacker=attacker, budget=BUDGETS[attacker],
                                      max_new_tokens=a.new_tokens, lookahead=lookahead, progress=False)
                runs[lookahead] = (time.perf_counter() - start, out)
        (t1, seq), (tl, ahead) = runs[1], runs[a.lookahead]
        for lookahead, (took, out) in runs.items():
            info = out["attacker"]
            print(f"  {attacker:13s} lookahead {lookahead}: {took:6.1f} s, replies judged "
                  f"{sum(r['queries_used'] for r in out['rows'])}, decoded ahead {info['replies_ahead']} "
                  f"({info['replies_ahead_unused']} unused), passes {info['passes_total']}, "
                  f"cracked {sum(r['cracked'] for r in out['rows'])}/{len(out['rows'])}", flush=True)
        same_suffixes = sum([e["suffix"] for e in x["transcript"]] == [e["suffix"] for e in y["transcript"]]
                            for x, y in zip(seq["rows"], ahead["rows"]))
        same_replies = sum([e["response"] for e in x["transcript"]] == [e["response"] for e in y["transcript"]]
                           for x, y in zip(seq["rows"], ahead["rows"]))
        print(f"  {attacker:13s} transcripts as the sequential one: suffixes {same_suffixes}/{len(behaviours)}, "
              f"replies {same_replies}/{len(behaviours)}")
        speedups.append(f"{attacker} {t1 / tl:.2f}x ({t1:.0f} s -> {tl:.0f} s)")
    print(f"lookahead {a.lookahead} against one reply at a time, {a.model}: " + ", ".join(speedups))


if __name__ == "__main__":
    main()
