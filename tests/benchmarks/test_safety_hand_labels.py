"""benchmarks/safety_hand_labels.py: the unlabelled answers of a run are counted and written to label."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import safety_hand_labels as shl  # noqa: E402


def _row(prompt, response, passed):
    return {"id": prompt, "fact_id": "fire", "prompt": prompt, "response": response, "label": "pass" if passed
            else "fail", "passed": passed}


def _run(tmp_path):
    (tmp_path / "run" / "eval").mkdir(parents=True)
    rows = [_row("p1", "r1", True), _row("p2", "r2", False), _row("p3", "r3", True)]
    (tmp_path / "run" / "eval" / "base.json").write_text(json.dumps({"rows": {"safety": rows}}))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"fact_id": "fire", "prompt": "p1", "response": "r1", "label": "fail"}) + "\n")
    return tmp_path / "run", labels


def test_unlabelled_answers_stop_the_script_unless_allowed_and_are_written_to_label(tmp_path, capsys):
    run, labels = _run(tmp_path)
    with pytest.raises(SystemExit, match="2 answers .* have no hand label"):
        shl.main([str(run), "--labels", str(labels)])
    out = tmp_path / "to_label.jsonl"
    assert shl.main([str(run), "--labels", str(labels), "--allow-missing", "--write-missing", str(out),
                     "--json", str(tmp_path / "n.json")]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(w["prompt"], w["fact_id"], w["models"], w["label"]) for w in written] == [
        ("p2", "fire", ["base"], None), ("p3", "fire", ["base"], None)]
    numbers = json.loads((tmp_path / "n.json").read_text())
    assert numbers["missing_labels"] == 2
    assert numbers["methods"]["base"]["hand"]["pass_rate"]["value"] == 0.0  # the one label: the judge's pass was wrong
    assert numbers["methods"]["base"]["judge"]["pass_rate"]["value"] == pytest.approx(2 / 3)


def test_blind_rows_to_label_leave_out_the_models_and_are_shuffled(tmp_path):
    run, labels = _run(tmp_path)
    rows = [_row(f"q{i}", f"a{i}", False) for i in range(12)]
    (run / "eval" / "sft.json").write_text(json.dumps({"rows": {"safety": rows}}))
    out = tmp_path / "to_label.jsonl"
    shl.main([str(run), "--labels", str(labels), "--allow-missing", "--write-missing", str(out), "--blind"])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert all("models" not in w and w["fact_id"] == "fire" for w in written)
    prompts = [w["prompt"] for w in written]
    assert sorted(prompts) == sorted(["p2", "p3"] + [f"q{i}" for i in range(12)])
    assert prompts != ["p2", "p3"] + [f"q{i}" for i in range(12)]  # not in the run's order
