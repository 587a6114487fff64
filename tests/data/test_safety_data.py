"""The safety-facts resource, its loader and validation, fact-disjoint splits and pair building."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from opct.data.safety import (
    MIN_PROMPT_TYPES,
    SafetyFact,
    SafetyFactsError,
    build_safety_pairs,
    load_facts,
    split_facts,
    system_message,
)
from opct.data.schema import read_pairs, write_pairs

# words that would tip the model off; a prompt must only involve the hazard
WARNING_WORDS = re.compile(
    r"\b(warn\w*|danger\w*|hazard\w*|toxic\w*|poison\w*|unsafe|safe|safely|safety|caution\w*|careful\w*|risk\w*"
    r"|harm\w*|deadly|lethal|fatal\w*|never|avoid\w*|beware)\b",
    re.I,
)


@pytest.fixture(scope="module")
def facts():
    return load_facts()


def test_resource_size_and_coverage(facts):
    assert len(facts) >= 60
    cats = Counter(f.category for f in facts)
    assert len(cats) >= 6
    assert len({f.id for f in facts}) == len(facts)
    for f in facts:
        assert len(f.prompts) >= 5, f.id
        assert len({p["type"] for p in f.prompts}) >= MIN_PROMPT_TYPES, f.id
        assert f.keywords and all(k.strip() for k in f.keywords), f.id
        assert len(re.findall(r"[.!?](?:\s+[A-Z]|$)", f.fact)) == 1, f"{f.id}: fact must be one sentence"


def test_prompts_do_not_state_the_fact(facts):
    for f in facts:
        sentence = f.fact.lower().rstrip(".")
        for p in f.prompts:
            assert f.fact not in p["text"], f.id
            assert sentence not in p["text"].lower(), f.id


def test_prompts_carry_no_warning_words(facts):
    bad = [(f.id, p["type"], WARNING_WORDS.findall(p["text"])) for f in facts for p in f.prompts
           if WARNING_WORDS.search(p["text"])]
    assert not bad


def test_prompts_are_distinct(facts):
    texts = [p["text"] for f in facts for p in f.prompts]
    assert len(texts) == len(set(texts))


def _fact_row(**over):
    row = {"id": "x_fact", "category": "food", "fact": "Raw sprouts can carry bacteria.", "keywords": ["sprout"],
           "prompts": [{"type": t, "text": f"prompt {i}"} for i, t in
                       enumerate(["question", "howto", "plan", "story", "shopping"])]}
    row.update(over)
    return row


def _write(tmp_path, rows):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_load_facts_from_a_custom_file(tmp_path):
    facts = load_facts(_write(tmp_path, [_fact_row()]))
    assert isinstance(facts[0], SafetyFact) and facts[0].id == "x_fact" and len(facts[0].prompts) == 5


@pytest.mark.parametrize(
    "row, where",
    [
        (_fact_row(keywords=[]), "field 'keywords'"),
        (_fact_row(fact="Two sentences here. And another one."), "field 'fact': expected one sentence"),
        (_fact_row(prompts=[{"type": "question", "text": "q"}] * 5), "distinct types"),
        (_fact_row(prompts=[{"type": "question", "text": "q"}]), "at least 5 prompts"),
        ({k: v for k, v in _fact_row().items() if k != "category"}, "field 'category'"),
        (_fact_row(prompts=[{"type": "poem", "text": "q"}] + _fact_row()["prompts"][1:]), "field 'prompts[0]'.type"),
        (_fact_row(prompts=_fact_row()["prompts"][:4] + [{"type": "story", "text": "Note: raw sprouts can carry bacteria"}]),
         "field 'prompts[4]'.text: states the fact"),
    ],
)
def test_load_facts_names_line_and_field(tmp_path, row, where):
    path = _write(tmp_path, [_fact_row(id="ok_fact"), row])
    with pytest.raises(SafetyFactsError) as e:
        load_facts(path)
    assert f"{path}:2:" in str(e.value) and where in str(e.value)


def test_load_facts_bad_json_duplicates_and_missing(tmp_path):
    path = _write(tmp_path, [_fact_row(), "{not json", _fact_row()])
    with pytest.raises(SafetyFactsError) as e:
        load_facts(path)
    msg = str(e.value)
    assert f"{path}:2: malformed JSON" in msg and f"{path}:3: field 'id': duplicate" in msg
    with pytest.raises(SafetyFactsError, match="no such file"):
        load_facts(tmp_path / "missing.jsonl")


def test_split_is_disjoint_stratified_and_deterministic(facts):
    train, test = split_facts(facts, 0.3, seed=0)
    tr, te = {f.id for f in train}, {f.id for f in test}
    assert not tr & te and tr | te == {f.id for f in facts}
    assert len(te) == round(0.3 * len(facts))
    for cat in {f.category for f in facts}:  # every category on both sides
        assert any(f.category == cat for f in train) and any(f.category == cat for f in test), cat
    again = split_facts(list(reversed(facts)), 0.3, seed=0)
    assert [f.id for f in again[1]] == [f.id for f in test]  # input order does not matter
    assert {f.id for f in split_facts(facts, 0.3, seed=1)[1]} != te
    assert split_facts(facts, 0.0)[1] == [] and split_facts(facts, 1.0)[0] == []
    with pytest.raises(ValueError):
        split_facts(facts, 1.5)


def test_pairs_shape_and_meta(facts):
    pairs, report = build_safety_pairs("train")
    by_id = {f.id: f for f in facts}
    assert report["n_pairs"] == len(pairs) > 0 and report["axis"] == "safety"
    assert len({p.id for p in pairs}) == len(pairs)
    for p in pairs:
        f = by_id[p.meta["fact_id"]]
        assert p.axis == "safety"
        assert [m["role"] for m in p.clean] == ["system", "user"]
        assert [m["role"] for m in p.wrapped] == ["user"]
        assert p.clean[0]["content"] == system_message(f.fact) and f.fact in p.clean[0]["content"]
        assert p.clean[1] == p.wrapped[0]
        assert p.wrapped[0]["content"] in [q["text"] for q in f.prompts]
        assert {"fact_id", "category", "prompt_type", "fact"} <= set(p.meta)
        assert p.meta["category"] == f.category and p.meta["fact"] == f.fact


def test_system_template_words_the_teachers_message_only():
    template = "Safety first: {fact} Warn about it."
    plain, _ = build_safety_pairs("test", limit=5)
    worded, _ = build_safety_pairs("test", limit=5, system_template=template)
    for a, b in zip(plain, worded):
        assert b.clean[0]["content"] == f"Safety first: {b.meta['fact']} Warn about it." != a.clean[0]["content"]
        assert (a.id, a.wrapped, a.clean[1:]) == (b.id, b.wrapped, b.clean[1:])
    assert system_message("Lye burns skin.", "{fact} {fact}") == "Lye burns skin. Lye burns skin."
    with pytest.raises(ValueError, match="fact"):
        build_safety_pairs("test", limit=1, system_template="Be careful.")


def test_train_and_test_pairs_share_no_fact(facts):
    train, r_train = build_safety_pairs("train", seed=0)
    test, r_test = build_safety_pairs("test", seed=5)  # the pair seed must not move the split
    assert not set(r_train["fact_ids"]) & set(r_test["fact_ids"])
    everything, _ = build_safety_pairs("all")
    assert len(train) + len(test) == len(everything) == sum(len(f.prompts) for f in facts)


def test_limit_spreads_over_facts_and_seed_orders():
    pairs, report = build_safety_pairs("train", limit=20)
    assert len(pairs) == 20 and report["n_facts"] == 20  # round-robin: one prompt per fact first
    a, _ = build_safety_pairs("train", seed=1)
    b, _ = build_safety_pairs("train", seed=2)
    assert [p.id for p in a] != [p.id for p in b] and sorted(p.id for p in a) == sorted(p.id for p in b)
    with pytest.raises(ValueError):
        build_safety_pairs("dev")


def test_pairs_roundtrip_through_jsonl(tmp_path):
    pairs, _ = build_safety_pairs("test", limit=10)
    path = tmp_path / "safety.jsonl"
    assert write_pairs(pairs, path) == 10
    back = read_pairs(path)
    assert [p.to_dict() for p in back] == [p.to_dict() for p in pairs]
