"""Generated arithmetic questions: exact answers, distinct near-miss distractors, stable ids, and
the sycophancy splits built from them (alone and mixed with MMLU)."""

import re

from opct.data.arithmetic import arithmetic_items
from opct.data.sycophancy import build_split, question_source


def solve(question: str) -> int:
    a, op, b = re.fullmatch(r"What is (\d+) ([+\-x]) (\d+)\?", question).groups()
    return {"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]


def test_items_have_one_exact_answer_and_distinct_distractors():
    items = arithmetic_items(400)
    assert len({it.id for it in items}) == len({it.question for it in items}) == 400
    for it in items:
        values = [int(o) for o in it.options]
        assert len(set(values)) == 4 and min(values) > 0
        assert int(it.option(it.answer)) == solve(it.question)
    letters = [it.answer for it in items]
    assert {letters.count(L) for L in "ABCD"} <= set(range(90, 111))  # spread over A-D
    assert arithmetic_items(50) == items[:50]  # a pure function of (index, seed)
    assert arithmetic_items(50, seed=1) != items[:50]


def test_arithmetic_and_mixed_splits():
    train, report = build_split("train", limit=40, source="arithmetic")
    test, _ = build_split("test", limit=40, source="arithmetic")
    assert report["per_source"] == {"arithmetic": 40}
    assert not {p.meta["question_id"] for p in train} & {p.meta["question_id"] for p in test}
    for p in train:
        assert p.meta["suggested"] != p.target and question_source(p) == "arithmetic"
    mixed, report = build_split("train", limit=40, source="mixed")
    assert report["per_source"] == {"arithmetic": 20, "mmlu": 20}
    first = [question_source(p) for p in mixed[:10]]
    assert len(set(first)) == 2  # interleaved, so taking the first N keeps both sources
