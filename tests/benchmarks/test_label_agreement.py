"""benchmarks/label_agreement.py: two readings of the same answers compared, per model of a run."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import label_agreement  # noqa: E402


def _labels(path, labels):
    path.write_text("".join(json.dumps({"prompt": p, "response": r, "label": l}) + "\n" for (p, r), l in labels))
    return path


def test_agreement_kappa_and_changes_per_model(tmp_path, capsys):
    keys = [(f"p{i}", f"r{i}") for i in range(4)]
    first = _labels(tmp_path / "a.jsonl", zip(keys, ["pass", "pass", "fail", "fail"]))
    second = _labels(tmp_path / "b.jsonl", zip(keys + [("p9", "r9")], ["pass", "fail", "fail", "fail", "pass"]))
    (tmp_path / "run" / "eval").mkdir(parents=True)
    for name, rows in (("sft", keys[:2]), ("sft-s1", keys[2:]), ("opct", keys[2:3])):
        (tmp_path / "run" / "eval" / f"{name}.json").write_text(json.dumps(
            {"rows": {"safety": [{"prompt": p, "response": r} for p, r in rows]}}))
    assert label_agreement.main([str(first), str(second), "--run", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    # 3 of 4 agree; chance agreement (2*1 + 2*3) / 16 = 0.5, so kappa (0.75 - 0.5) / 0.5 = 0.5
    assert "4 distinct answers of" in out and "agree on 3 (0.750), Cohen's kappa 0.500" in out
    assert "precision of pass 1.000, recall 0.500" in out  # the second reading passes 1 of the first's 2 passes
    assert "changed: 1 pass -> fail" in out
    assert "sft           2 answers: 1 pass -> fail, 0 fail -> pass" in out
    assert "sft-s1        2 answers: 0 pass -> fail" in out


def test_readings_with_no_answer_in_common_stop(tmp_path):
    first = _labels(tmp_path / "a.jsonl", [(("p", "r"), "pass")])
    second = _labels(tmp_path / "b.jsonl", [(("q", "r"), "pass")])
    with pytest.raises(SystemExit, match="no answer in common"):
        label_agreement.main([str(first), str(second)])
    with pytest.raises(SystemExit, match="holds no evaluation"):
        label_agreement.main([str(first), str(second), "--run", str(tmp_path / "not-a-run")])


def test_trained_only_leaves_out_the_base_and_teacher_answers(tmp_path, capsys):
    keys = [(f"p{i}", f"r{i}") for i in range(3)]
    first = _labels(tmp_path / "a.jsonl", zip(keys, ["pass", "pass", "fail"]))
    second = _labels(tmp_path / "b.jsonl", zip(keys, ["fail", "pass", "fail"]))
    (tmp_path / "run" / "eval").mkdir(parents=True)
    for name, rows in (("base", keys[:1]), ("sft", keys[1:])):
        (tmp_path / "run" / "eval" / f"{name}.json").write_text(json.dumps(
            {"rows": {"safety": [{"prompt": p, "response": r} for p, r in rows]}}))
    label_agreement.main([str(first), str(second), "--run", str(tmp_path / "run"), "--trained-only"])
    out = capsys.readouterr().out
    assert "2 distinct answers of" in out and "agree on 2 (1.000)" in out and "base" not in out
