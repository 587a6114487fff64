"""Verifiable instruction checks: a passing and a failing response for every check type."""

from __future__ import annotations

import pytest

from opct.evals import instructions as ins

# (check, passing response, failing response)
CASES = [
    ({"type": "max_words", "n": 5}, "one two three four five", "one two three four five six"),
    ({"type": "min_words", "n": 4}, "it's a well-known fact here", "too short"),
    ({"type": "include_keywords", "words": ["light", "Scattering"]}, "Light scattering explains it.",
     "Lights and scatterings are plural."),
    ({"type": "forbidden_words", "words": ["cheap"]}, "An inexpensive bottle (cheapest? no).", "A CHEAP bottle."),
    ({"type": "keyword_frequency", "word": "soil", "min_count": 3}, "Soil, soil and more soil.", "soil and soils, topsoil"),
    ({"type": "json_keys", "keys": ["title", "year"]}, '```json\n{"title": "X", "year": 1999}\n```',
     '{"title": "X"}'),
    ({"type": "json_keys", "keys": ["a"]}, '{"a": 1}', 'Here it is: {"a": 1}'),
    ({"type": "bullet_count", "n": 3}, "Intro\n* one\n* two\n- three\n***", "* one\n* two\n\n---"),
    ({"type": "lowercase"}, "all lower case, 123.", "Not lower case."),
    ({"type": "uppercase"}, "ALL CAPS HERE!", "ALL CAPS except this"),
    ({"type": "starts_with", "phrase": "Certainly"}, "  Certainly! Boil water.", "Sure, certainly."),
    ({"type": "ends_with", "phrase": "That is all."}, "Text.\nThat is all.\n", "That is all. More text."),
    ({"type": "paragraph_count", "n": 2}, "First para.\nstill first.\n\n  \nSecond para.", "Only one paragraph."),
    ({"type": "title"}, "<<Ocean Song>>\nWaves...", "<<>> no title, or <just angles>"),
    ({"type": "no_commas"}, "No commas here at all.", "Well, one comma."),
    ({"type": "placeholders", "min_count": 2}, "Dear [name], at [address].", "Dear [name], hello []."),
    ({"type": "postscript", "marker": "P.S."}, "Thanks!\n\nP.S. See you soon.", "Thanks! (no postscript, P.S)"),
    ({"type": "quotation"}, '"A friendly name: Bolt."', '"Bolt" is a good name.'),
    ({"type": "sections", "n": 2, "marker": "SECTION"}, "SECTION 1\nfoo\n## SECTION 2\nbar",
     "SECTION 1\nfoo\nno second section"),
    ({"type": "highlights", "min_count": 2}, "A *bright* arc of *seven* colors.", "Only **bold** and *one*."),
    ({"type": "max_chars", "n": 20}, "Short tweet!", "This tweet is definitely longer than twenty characters."),
]


@pytest.mark.parametrize("check, good, bad", CASES, ids=[c[0]["type"] + f"-{i}" for i, c in enumerate(CASES)])
def test_check_passes_and_fails(check, good, bad):
    spec = {"prompt": "p", "checks": [check]}
    assert ins.check(spec, good) is True
    assert ins.check(spec, bad) is False


def test_every_check_type_is_tested_and_used():
    tested = {c[0]["type"] for c in CASES}
    assert tested == set(ins.CHECKS)
    used = {c["type"] for s in ins.INSTRUCTION_SPECS for c in s.checks}
    assert used == set(ins.CHECKS)


def test_prompt_set_is_well_formed():
    specs = ins.instruction_specs()
    assert len(specs) >= 30
    assert len({s.id for s in specs}) == len(specs)
    assert len({s.prompt for s in specs}) == len(specs)
    for s in specs:
        assert s.checks
        ins.check_results(s, "")  # every check's parameters match its function
        ins.check_results(s, "Some response.\n\n* a\n")
    assert len(ins.instruction_specs(5)) == 5


def test_compound_spec_needs_every_check():
    spec = next(s for s in ins.INSTRUCTION_SPECS if s.id == "if-30")  # 6 bullets, ends with a phrase
    good = "\n".join(f"- item {i}" for i in range(6)) + "\nHappy camping!"
    assert ins.check(spec, good)
    assert ins.check_results(spec, good.replace("Happy camping!", "Enjoy!")) == [True, False]
    assert not ins.check(spec, "- one\nHappy camping!")


def test_unknown_check_type_raises():
    with pytest.raises(ValueError, match="unknown check type"):
        ins.check({"checks": [{"type": "rhymes"}]}, "x")


def test_instruction_accuracy_scores_generations(monkeypatch):
    from opct.generation import Completion

    specs = [
        ins.InstructionSpec("a", "lowercase please", [{"type": "lowercase"}]),
        ins.InstructionSpec("b", "two checks", [{"type": "no_commas"}, {"type": "max_words", "n": 3}]),
    ]
    replies = ["all lowercase", "no commas but far too many words here"]
    monkeypatch.setattr(
        "opct.generation.generate", lambda model, tok, prompts, **kw: [[Completion(r, [], r == replies[0])] for r in replies]
    )
    out = ins.instruction_accuracy(None, None, specs=specs, return_records=True)
    assert out["value"] == 0.5 and out["n"] == 2
    assert out["instruction_level"] == pytest.approx(2 / 3)
    assert out["records"][1]["checks"] == [True, False]
    assert out["cut_off"] == 1 and [r["finished"] for r in out["records"]] == [True, False]
