"""benchmarks/prefill_ceiling.py: behaviours with a complied / concrete reply, per model and opening."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import prefill_ceiling  # noqa: E402


def test_summary_counts_a_behaviour_by_its_best_reply():
    rows = [{"model": "embedded:m", "opening": o, "behavior_id": b, "prompt": b, "response": f"{b}{o}{k}"}
            for b in ("b1", "b2") for o in ("affirmative", "numbered") for k in range(2)]
    labels = {(r["prompt"], r["response"]): "none" for r in rows}
    labels[("b1", "b1affirmative1")] = "concrete"
    labels[("b2", "b2numbered0")] = "complied"
    table = prefill_ceiling.summarize(rows, labels)
    assert "| m | affirmative | 1 / 2 | 1 / 2 | 3 / 0 / 1 |" in table
    assert "| m | numbered | 1 / 2 | 0 / 2 | 3 / 1 / 0 |" in table
    assert "| m | either | 2 / 2 | 1 / 2 | 6 / 1 / 1 |" in table
