"""Answer extraction, MATH normalization, generated word problems and benchmark file loaders."""

from __future__ import annotations

import ast
import json
import operator
from fractions import Fraction

import pytest

from opct.evals import math as m

# ---------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The total is 1,234 apples.", 1234),
        ("It costs $5.", 5),
        ("The temperature dropped to -3 degrees.", -3),
        ("3.0", 3),
        ("Some work.\n#### 42", 42),
        (r"So the result is \boxed{42}.", 42),
        ("The answer is 42.", 42),
        ("#### 1,000\n", 1000),
        ("So 5-3=2", 2),
        ("- 3 apples\n- 4 pears", 4),
        (r"\boxed{\frac{1}{2}}", 0.5),
        ("#### $18", 18),
        ("#### 15\n\nNote: I also counted 99 things.", 15),
        ("Final answer: -7", -7),
        ("She pays $1,234.50 in total", 1234.5),
        ("The discount is 50%", 50),
        ("x = 5", 5),
        ("There is no number here.", None),
        ("", None),
        (r"It costs \$7.", 7),
        ("Halves: 0.5 and .25", 0.25),
        ("The answer is 7. Check: 3 + 4 = 7, so 10 items are left.", 7),
        ("#### 12.50", 12.5),
        ("The car went 60km", 60),
        (r"\boxed{-12}", -12),
    ],
)
def test_extract_final_number(text, expected):
    got = m.extract_final_number(text)
    assert got == expected
    if isinstance(expected, int):
        assert isinstance(got, int)  # integral values come back as int ("3.0" -> 3)


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{42}", "42"),
        (r"\boxed{\frac{a}{b^{2}}} done", r"\frac{a}{b^{2}}"),
        (r"first \boxed{1} then \boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed 5$", "5"),
        (r"\fbox{x+1}", "x+1"),
        ("no box here", None),
        (r"\boxed{unbalanced", None),
    ],
)
def test_extract_boxed(text, expected):
    assert m.extract_boxed(text) == expected


@pytest.mark.parametrize(
    "raw, normalized",
    [
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"10\text{ cm}", "10"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        ("x = 3", "3"),
        (r"\frac12", r"\frac{1}{2}"),
        ("5.", "5"),
        ("5.0", "5"),
        (r"\$1,000", "1000"),
        (r"\text{Evelyn}", "Evelyn"),
        (r"4\!\cdot\!3", r"4\cdot3"),
        ("$.5$", "0.5"),
        (r"25\%", "25"),
    ],
)
def test_normalize_math_answer(raw, normalized):
    assert m.normalize_math_answer(raw) == normalized


@pytest.mark.parametrize(
    "pred, gold, equal",
    [
        (r"\dfrac{1}{2}", "0.5", True),
        ("1/2", r"\frac{1}{2}", True),
        (r"2\sqrt{3}", r"\sqrt{12}", True),
        (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}", True),
        (r"(1, 2)", r"\left(1,2\right)", True),
        (r"12\text{ inches}", "12", True),
        (r"\boxed{7}", "7", True),
        ("3", "4", False),
        (r"\pi", "3.14", False),
        ("(1, 2)", "(2, 1)", False),
        (None, "1", False),
        ("", "1", False),
    ],
)
def test_math_equal(pred, gold, equal):
    assert m.math_equal(pred, gold) is equal


def test_grade_math_numeric_and_latex():
    num = m.MathProblem(id="a", question="q", answer="18")
    assert m.grade_math(num, "3 * 6 = 18\n#### 18")
    assert not m.grade_math(num, "#### 17")
    tex = m.MathProblem(id="b", question="q", answer=r"\frac{3}{4}", kind="latex")
    assert m.grade_math(tex, r"so #### \dfrac{3}{4}")
    assert m.grade_math(tex, r"The result is $\boxed{0.75}$.")
    assert not m.grade_math(tex, r"#### \frac{4}{3}")


# ---------------------------------------------------------------------------- word problems

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _evaluate(node, values):
    """Exact rational value of a formula over `values` (an evaluator independent of the generator)."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, values)
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.Name):
        return Fraction(values[node.id])
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    raise AssertionError(f"unexpected node {node!r}")


def _n_ops(formula: str) -> int:
    return sum(isinstance(n, ast.BinOp) for n in ast.walk(ast.parse(formula, mode="eval")))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_word_problem_answers_are_exact_integers(level):
    problems = m.generate_word_problems(400, seed=7, level=level)
    assert len(problems) == 400
    for p in problems:
        value = _evaluate(ast.parse(p.formula, mode="eval"), p.values)
        assert value.denominator == 1 and value >= 0, p
        assert int(p.answer) == value == p.answer_int, p
        for v in p.values.values():  # every number in the formula is stated in the question
            assert str(v) in p.question, p
        assert p.level == level and p.kind == "number"
        # the grader accepts the gold answer in the requested format
        assert m.grade_math(p, f"Working it out.\n#### {p.answer}")


def test_word_problem_levels_differ():
    ops = {lv: {_n_ops(p.formula) for p in m.generate_word_problems(300, seed=1, level=lv)} for lv in (1, 2, 3)}
    assert ops[1] == {1}
    assert ops[2] == {2}
    assert min(ops[3]) >= 3
    level3 = m.generate_word_problems(300, seed=1, level=3)
    assert all(("*" in p.formula) or ("/" in p.formula) for p in level3)
    templates = {lv: {p.template for p in m.generate_word_problems(300, seed=1, level=lv)} for lv in (1, 2, 3)}
    assert all(len(t) >= 5 for t in templates.values())  # varied templates at every level


def test_word_problems_deterministic_and_endless():
    a = m.generate_word_problems(50, seed=3, level=2)
    b = m.generate_word_problems(50, seed=3, level=2)
    c = m.generate_word_problems(50, seed=4, level=2)
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in a] != [p.question for p in c]
    mixed = m.generate_word_problems(3000, seed=0, level=[1, 2, 3])
    assert len({p.question for p in mixed}) == 3000
    assert {p.level for p in mixed} == {1, 2, 3}
    stream = m.iter_word_problems(seed=0, level=1)
    assert len([next(stream) for _ in range(5000)]) == 5000
    with pytest.raises(ValueError):
        m.generate_word_problems(1, level=4)


# ---------------------------------------------------------------------------- loaders and the eval loop


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_gsm8k_and_math500_from_files(tmp_path):
    gsm = _write_jsonl(tmp_path / "gsm.jsonl", [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
        {"question": "What is 1000 + 234?", "answer": "#### 1,234"},
        {"question": "Bare number gold?", "answer": 5},
    ])
    probs = m.load_gsm8k(gsm)
    assert [p.answer for p in probs] == ["7", "1234", "5"] and probs[0].kind == "number"
    assert len(m.load_gsm8k(gsm, limit=2)) == 2
    assert m.detect_benchmark_file(gsm) == "gsm8k"

    mth = _write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "Compute 3/4 as a fraction.", "answer": r"\frac{3}{4}", "subject": "Algebra", "level": 1,
         "unique_id": "test/algebra/1.json"},
    ])
    probs = m.load_math500(mth)
    assert probs[0].kind == "latex" and probs[0].id == "test/algebra/1.json" and probs[0].meta["subject"] == "Algebra"
    assert m.detect_benchmark_file(mth) == "math500"


def test_malformed_benchmark_files_name_file_and_line(tmp_path):
    bad = _write_jsonl(tmp_path / "bad.jsonl", [
        {"question": "ok", "answer": "#### 1"},
        "{not json",
        {"question": "no answer field"},
    ])
    with pytest.raises(m.BenchmarkDataError) as e:
        m.load_gsm8k(bad)
    assert f"{bad}:2: malformed JSON" in str(e.value) and f"{bad}:3:" in str(e.value)
    no_hash = _write_jsonl(tmp_path / "nohash.jsonl", [{"question": "q", "answer": "no final line"}])
    with pytest.raises(m.BenchmarkDataError, match=r"nohash.jsonl:1: .*####"):
        m.load_gsm8k(no_hash)
    with pytest.raises(m.BenchmarkDataError, match="no such file"):
        m.load_math500(tmp_path / "missing.jsonl")
    with pytest.raises(m.BenchmarkDataError, match="empty"):
        m.load_math500(_write_jsonl(tmp_path / "empty.jsonl", []))


def test_hub_unreachable_is_reported(monkeypatch):
    monkeypatch.setattr(m, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(m.BenchmarkUnavailable, match="offline"):
        m.load_gsm8k()
    with pytest.raises(m.BenchmarkUnavailable, match="offline"):
        m.load_math500()


def test_math_accuracy_grades_generations(monkeypatch):
    from opct.generation import Completion

    problems = m.generate_word_problems(4, seed=0, level=1)
    replies = [f"#### {problems[0].answer}", f"The answer is {problems[1].answer}.", "#### -1", "no idea"]
    seen = {}

    def fake_generate(model, tokenizer, prompts, **kw):
        seen["prompts"], seen["kw"] = prompts, kw
        return [[Completion(r, [], r != "no idea")] for r in replies]  # the last one hit the token limit

    monkeypatch.setattr("opct.generation.generate", fake_generate)
    out = m.math_accuracy(None, None, problems, max_new_tokens=32, return_records=True)
    assert out["value"] == 0.5 and out["n"] == 4
    assert [r["correct"] for r in out["records"]] == [True, True, False, False]
    assert out["cut_off"] == 1 and [r["finished"] for r in out["records"]] == [True, True, True, False]
    assert "#### <number>" in seen["prompts"][0][0]["content"] and seen["kw"]["temperature"] == 0.0
