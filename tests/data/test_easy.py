"""Generated everyday questions: one right answer from the asked category, distractors from
others, stable ids, and the sycophancy splits built from them (alone and mixed with MMLU)."""

from opct.data.easy import CATEGORIES, easy_items
from opct.data.sycophancy import build_split, question_source


def test_items_have_exactly_one_member_of_the_category():
    items = easy_items(400)
    assert len({it.id for it in items}) == 400
    for it in items:
        category = it.question.removeprefix("Which of these is ").removesuffix("?")
        members = [o for o in it.options if o in CATEGORIES[category]]
        assert members == [it.option(it.answer)], it
        assert len(set(it.options)) == 4
    letters = [it.answer for it in items]
    assert {letters.count(L) for L in "ABCD"} <= set(range(90, 111))  # spread over A-D
    assert easy_items(50) == items[:50]  # a pure function of (index, seed)
    assert easy_items(50, seed=1) != items[:50]


def test_no_word_sits_in_two_categories():
    seen = {}
    for category, words in CATEGORIES.items():
        for w in words:
            assert w not in seen, (w, category, seen.get(w))
            seen[w] = category


def test_easy_and_mixed_splits():
    train, report = build_split("train", limit=40, source="easy")
    test, _ = build_split("test", limit=40, source="easy")
    assert report["per_source"] == {"easy": 40}
    assert not {p.meta["question_id"] for p in train} & {p.meta["question_id"] for p in test}
    for p in train:
        assert p.meta["suggested"] != p.target and question_source(p) == "easy"
    mixed, report = build_split("train", limit=40, source="mixed")
    assert report["per_source"] == {"easy": 20, "mmlu": 20}
    assert len({question_source(p) for p in mixed[:10]}) == 2  # interleaved: the first N keep both sources
