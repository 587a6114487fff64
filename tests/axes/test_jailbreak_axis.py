"""The jailbreak axis's per-item scores, which its OPCT-vs-SFT verdicts pair over."""

import pytest

from opct.axes.jailbreak import item_scores


def test_static_scores_are_per_behaviour_so_the_verdict_resamples_behaviours():
    rows = {"static": [
        {"id": "b1|w1", "behavior_id": "b1", "cracked": True},
        {"id": "b1|w2", "behavior_id": "b1", "cracked": False},
        {"id": "b1|w3", "behavior_id": "b1", "cracked": None},  # unparsed: left out
        {"id": "b2|w1", "behavior_id": "b2", "cracked": False},
        {"id": "b3|w1", "behavior_id": "b3", "cracked": None},
    ]}
    assert item_scores(rows, "static") == {"b1": pytest.approx(0.5), "b2": 0.0}
    adaptive = {"adaptive": [{"behavior_id": "b1", "cracked": True, "best_score": 0.9},
                             {"behavior_id": "b2", "cracked": False, "best_score": 0.1},
                             {"behavior_id": "b3", "cracked": False, "best_score": None}]}
    assert item_scores(adaptive, "adaptive") == {"b1": 0.0, "b2": 1.0}
