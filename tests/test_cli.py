"""The `opct` command line, called in-process through `opct.cli.main`: training runs on the tiny
model (files written, refusal to overwrite, resume), clear exit-2 errors, data commands, and one
end-to-end run on the embedded SmolLM2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from opct.cli import main
from opct.data.schema import ContrastivePair, read_pairs, write_pairs
from opct.embedded import EMBEDDED


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_pairs(
        [
            ContrastivePair(
                id=f"p{i}", axis="test",
                clean=[{"role": "user", "content": f"What is {i} + {i}? Think about it."}],
                wrapped=[{"role": "user", "content": f"I'm sorry, but I think the answer is B. What is {i} + {i}?"}],
            )
            for i in range(4)
        ],
        path,
    )
    return str(path)


TINY_FLAGS = ["--batch-size", "2", "--save-steps", "1", "--seed", "0", "--set", "max_new_tokens=4",
              "--set", "num_samples=1", "--set", "lora_r=4", "--set", "lora_alpha=8", "--set", "disable_tqdm=true"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------ train
def test_train_writes_run_refuses_rerun_and_resumes(tiny_model_dir, pair_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "opct", "--model", tiny_model_dir, "--pairs", pair_file,
                                "--out", out, "--max-steps", "2", *TINY_FLAGS)
    assert code == 0, err
    assert re.search(r"opct train opct: 2 steps in \d+s, train loss [-\d.e+]+.*; adapter at .*final", stdout), stdout
    assert (out / "final" / "adapter_config.json").is_file()
    assert json.loads((out / "final" / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model_dir
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-1", "checkpoint-2"}
    config = json.loads((out / "opct_config.json").read_text())
    assert config["method"] == "opct" and config["model"] == tiny_model_dir and config["n_pairs"] == 4
    assert config["config"]["max_steps"] == 2 and config["config"]["num_samples"] == 1
    assert config["config"]["max_new_tokens"] == 4 and config["config"]["lora_r"] == 4
    steps = [r["step"] for r in log_records(out) if "loss" in r]
    assert steps == [1, 2]
    assert json.loads((out / "summary.json").read_text())["steps"] == 2

    # Again without --resume: refused, nothing overwritten.
    code, _, err = run_cli(capsys, "train", "opct", "--model", tiny_model_dir, "--pairs", pair_file,
                           "--out", out, "--max-steps", "2", *TINY_FLAGS)
    assert code == 2
    assert "--resume" in err and "already holds checkpoints (checkpoint-2)" in err and str(out) in err
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-1", "checkpoint-2"}

    # --resume with more steps continues from checkpoint-2.
    code, stdout, err = run_cli(capsys, "train", "opct", "--model", tiny_model_dir, "--pairs", pair_file,
                                "--out", out, "--max-steps", "3", "--resume", *TINY_FLAGS)
    assert code == 0, err
    assert f"opct: resuming {out} from {out / 'checkpoint-2'} (step 2)" in stdout, stdout
    assert "opct train opct: 3 steps" in stdout, stdout
    assert (out / "checkpoint-3").is_dir()
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    steps = [r["step"] for r in log_records(out) if "loss" in r]
    assert steps == [1, 2, 3]  # step 3 appended, steps 1-2 not redone
    assert json.loads((out / "opct_config.json").read_text())["config"]["max_steps"] == 3


def test_train_summary_counts_building_the_trainer(tiny_model_dir, pair_file, tmp_path, capsys):
    """BCT generates its targets while its trainer is built; the summary says how much of its seconds
    that took (tests/trainers: a learning curve starts there)."""
    out = tmp_path / "bct"
    code, _, err = run_cli(capsys, "train", "sft", "--model", tiny_model_dir, "--pairs", pair_file, "--out", out,
                           "--max-steps", "1", "--batch-size", "2", "--seed", "0", "--set", "target_max_new_tokens=4",
                           "--set", "lora_r=4", "--set", "lora_alpha=8", "--set", "disable_tqdm=true")
    assert code == 0, err
    assert len((out / "bct_targets.jsonl").read_text().splitlines()) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["setup_seconds"] <= summary["seconds"]


def test_train_hides_library_deprecation_noise(tiny_model_dir, pair_file, tmp_path, capsys):
    # TRL's configs set transformers' deprecated `gradient_checkpointing`, which warns on every config.
    from transformers import TrainingArguments

    with pytest.warns(FutureWarning, match="gradient_checkpointing"):
        TrainingArguments(output_dir=str(tmp_path / "x"), gradient_checkpointing=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_cli(capsys, "train", "sft", "--model", tiny_model_dir, "--pairs", pair_file,
                               "--out", tmp_path / "run", "--max-steps", "1", "--batch-size", "2", "--set",
                               "target_max_new_tokens=4", "--set", "lora_r=4", "--set", "disable_tqdm=true")
    assert code == 0, err
    noise = [str(w.message) for w in caught if "gradient_checkpointing" in str(w.message)]
    assert not noise, noise


def test_bad_config_key(tmp_path, pair_file, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("learning_rate = 1e-4\nnot_a_field = 3\n")
    code, _, err = run_cli(capsys, "train", "opct", "--config", cfg, "--pairs", pair_file, "--out", tmp_path / "o")
    assert code == 2
    assert "not_a_field" in err and str(cfg) in err and "--help-config" in err
    cfg.write_text("[opct]\nnum_sampels = 2\n")
    code, _, err = run_cli(capsys, "train", "opct", "--config", cfg, "--pairs", pair_file, "--out", tmp_path / "o")
    assert code == 2 and "num_sampels" in err and str(cfg) in err
    assert not (tmp_path / "o").exists()


def test_config_file_tables_and_syntax(tmp_path, pair_file, capsys):
    from opct.trainers.run import load_config_file

    cfg = tmp_path / "cfg.toml"
    cfg.write_text("learning_rate = 1e-4\nnum_samples = 3\n[opct]\nnum_samples = 5\n[act]\nact_weight_unused = 1\n")
    assert load_config_file(cfg, "opct") == {"learning_rate": 1e-4, "num_samples": 5}
    cfg.write_text("learning_rate = \n")
    code, _, err = run_cli(capsys, "train", "opct", "--config", cfg, "--pairs", pair_file, "--out", tmp_path / "o")
    assert code == 2 and "not valid TOML" in err and str(cfg) in err
    code, _, err = run_cli(capsys, "train", "opct", "--config", tmp_path / "nope.toml", "--pairs", pair_file,
                           "--out", tmp_path / "o")
    assert code == 2 and "no such config file" in err


def test_bad_set_option(tmp_path, pair_file, capsys):
    code, _, err = run_cli(capsys, "train", "opct", "--pairs", pair_file, "--out", tmp_path / "o", "--set", "bogus=1")
    assert code == 2 and "'bogus'" in err
    code, _, err = run_cli(capsys, "train", "opct", "--pairs", pair_file, "--out", tmp_path / "o", "--set", "noequals")
    assert code == 2 and "expected KEY=VALUE" in err


def test_bad_demo_set_option(tmp_path, capsys):
    for item, message in (("opct.max_stepz=3", "opct has no option 'max_stepz'"),
                          ("max_steps=3", "expected METHOD.KEY=VALUE"), ("bct.max_steps=3", "'bct' is not a method")):
        code, _, err = run_cli(capsys, "demo", "--profile", "quick", "--out", tmp_path / "d", "--set", item)
        assert code == 2 and message in err, (item, err)
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_resume_keeps_the_runs_axis_organism_and_profile(tmp_path, capsys):
    """--resume without --axis / --organism / --profile continues the run in --out as it was started
    (its recorded settings), and says so; the bad --set / --methods then stop it before any work."""
    demo = tmp_path / "d"
    demo.mkdir()
    (demo / "demo_config.json").write_text(json.dumps({"axis": "jailbreak", "profile": "quick"}))
    code, out, err = run_cli(capsys, "demo", "--resume", "--out", demo, "--set", "bct.max_steps=3")
    assert code == 2 and "--resume keeps the run's --axis jailbreak, --profile quick" in out
    code, out, _ = run_cli(capsys, "demo", "--resume", "--axis", "safety", "--out", demo, "--set", "bct.max_steps=3")
    assert code == 2 and "--resume keeps the run's --profile quick" in out and "--axis" not in out  # a given flag wins
    everything = tmp_path / "a"
    (everything / "spurious").mkdir(parents=True)
    (everything / "spurious" / "audit_config.json").write_text(json.dumps({"organism": "spurious", "profile": "quick"}))
    code, out, err = run_cli(capsys, "audit", "--resume", "--out", everything, "--methods", "greedy,vibes")
    assert code == 2 and "--resume keeps the run's --organism all, --profile quick" in out and "vibes" in err
    code, out, _ = run_cli(capsys, "audit", "--out", everything, "--methods", "greedy,vibes")  # no --resume
    assert code == 2 and "keeps" not in out


def test_bad_pair_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    good = {"id": "a", "axis": "x", "clean": [{"role": "user", "content": "q"}],
            "wrapped": [{"role": "user", "content": "q!"}]}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "wrapped": [{"role": "bot", "content": "q"}]}) + "\n")
    code, _, err = run_cli(capsys, "train", "opct", "--pairs", bad, "--out", tmp_path / "o")
    assert code == 2
    assert f"{bad}:2: field 'wrapped[0]'.role" in err
    assert not (tmp_path / "o").exists()


def test_missing_required_arguments(capsys):
    code, _, err = run_cli(capsys, "train", "opct")
    assert code == 2 and "--pairs FILE and --out DIR" in err


def test_bad_model_spec(tmp_path, pair_file, capsys):
    code, _, err = run_cli(capsys, "train", "opct", "--model", "not a spec", "--pairs", pair_file, "--out", tmp_path / "o")
    assert code == 2 and "'not a spec': not an embedded model" in err


def test_bad_attack_budgets(tmp_path, capsys):
    """Checked before any model loads; nothing is written."""
    for flag in ("--budget", "--max-queries"):
        code, _, err = run_cli(capsys, "eval", "jailbreak", "--attack", "adaptive", "--attacker", "gcg", flag, "0",
                               "--out", tmp_path / "j.json")
        assert code == 2 and f"{flag} must be >= 1" in err
    assert not list(tmp_path.iterdir())


def test_help_config(capsys):
    code, stdout, _ = run_cli(capsys, "train", "opct", "--help-config")
    assert code == 0
    assert stdout.startswith("config fields of `opct train opct` (OPCTConfig):")
    for name in ("num_samples", "max_new_tokens", "loss_type", "lora_r", "learning_rate", "max_prompt_length"):
        assert re.search(rf"^  {name} = ", stdout, re.M), name
    assert "Completions sampled per wrapped prompt" in stdout
    code, stdout, _ = run_cli(capsys, "train", "act", "--help-config")
    assert code == 0 and "ACTConfig" in stdout


def test_selftrain_from_the_command_line(tiny_model_dir, pair_file, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "train", "selftrain", "--help-config")
    assert code == 0 and "SelfTrainConfig" in stdout and re.search(r"^  selector = 'greedy'", stdout, re.M)
    out = tmp_path / "st"
    code, stdout, err = run_cli(capsys, "train", "selftrain", "--model", tiny_model_dir, "--pairs", pair_file,
                                "--out", out, "--max-steps", "1", "--set", "selector=self_certainty",
                                "--set", "num_candidates=2", "--set", "target_max_new_tokens=4",
                                "--set", "disable_tqdm=true")
    assert code == 0, err
    assert "label kept for" in stdout and (out / "final" / "adapter_config.json").exists()
    code, _, err = run_cli(capsys, "train", "selftrain", "--model", tiny_model_dir, "--pairs", pair_file,
                           "--out", tmp_path / "bad", "--set", "selector=vibes")
    assert code == 2 and "selector must be one of" in err


def test_audit_rejects_unknown_methods(tmp_path, capsys):
    code, _, err = run_cli(capsys, "audit", "--profile", "quick", "--methods", "greedy,vibes", "--out", tmp_path / "a")
    assert code == 2 and "unknown method(s) vibes" in err
    assert not (tmp_path / "a").exists()  # refused before anything was written or loaded


def test_no_command_prints_help(capsys):
    code, stdout, _ = run_cli(capsys)
    assert code == 2 and "usage: opct" in stdout
    assert all(v in stdout for v in ("OPCT_BF16", "OPCT_CACHE", "OPCT_ONEDNN"))  # the environment it reads
    assert all(f"embedded:{name} = {model.description}" in " ".join(stdout.split()) for name, model in EMBEDDED.items())


def test_help_imports_no_torch():
    code = "import sys; from opct.cli import build_parser; build_parser().format_help(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# ------------------------------------------------------------------------------ data
def test_data_sycophancy(tmp_path, capsys):
    out = tmp_path / "test.jsonl"
    code, stdout, err = run_cli(capsys, "data", "sycophancy", "--split", "test", "--limit", "5", "--out", out)
    assert code == 0, err
    pairs = read_pairs(out)
    assert len(pairs) == 5
    assert f"wrote 5 pairs to {out}" in stdout
    for p in pairs:
        assert p.axis == "sycophancy" and p.target in "ABCD"
        assert p.meta["family"] and p.clean != p.wrapped


def test_data_sycophancy_known_by_a_model(tiny_model_dir, tmp_path, capsys):
    from opct.evals.sycophancy import known_pairs
    from opct.models import load_model

    out = tmp_path / "known.jsonl"
    code, stdout, err = run_cli(capsys, "data", "sycophancy", "--split", "test", "--limit", "12", "--source", "easy",
                                "--known-by", tiny_model_dir, "--min-prob", "0", "--out", out)
    model, tok = load_model(tiny_model_dir)
    from opct.data.sycophancy import build_split

    expected, _ = known_pairs(model, tok, build_split("test", limit=12, source="easy")[0], min_prob=0, progress=False)
    if not expected:  # nothing known: a clear error, no file
        assert code == 2 and "no pairs to write" in err and not out.exists()
        return
    assert code == 0, err
    assert [p.id for p in read_pairs(out)] == [p.id for p in expected]
    assert f"answers {len(expected)} of 12 clean questions right" in stdout
    code, _, err = run_cli(capsys, "data", "sycophancy", "--split", "test", "--limit", "12", "--source", "easy",
                           "--known-by", tiny_model_dir, "--min-prob", "1.5", "--out", tmp_path / "none.jsonl")
    assert code == 2 and "no pairs to write" in err and not (tmp_path / "none.jsonl").exists()


def test_data_safety_words_the_teacher_and_refuses_a_template_without_the_fact(tmp_path, capsys):
    out = tmp_path / "safety.jsonl"
    code, stdout, err = run_cli(capsys, "data", "safety", "--split", "test", "--limit", "3", "--out", out,
                                "--system-template", "Hazard: {fact}")
    assert code == 0, err
    assert "wrote 3 pairs" in stdout
    assert all(p.clean[0]["content"] == "Hazard: " + p.meta["fact"] for p in read_pairs(out))
    code, _, err = run_cli(capsys, "data", "safety", "--limit", "3", "--out", tmp_path / "bad.jsonl",
                           "--system-template", "Be careful.")
    assert code == 2 and "--system-template" in err and "{fact}" in err and not (tmp_path / "bad.jsonl").exists()


CHUA_ROWS = [
    {"original_question_hash": "h1", "original_dataset": "mmlu", "bias_name": "suggested_answer",
     "unbiased_question": [{"role": "user", "content": "Q1? (A) x (B) y"}],
     "biased_question": [{"role": "user", "content": "I think (B). Q1? (A) x (B) y"}],
     "ground_truth": "A", "biased_option": "B"},
    {"original_question_hash": "h2", "original_dataset": "mmlu", "bias_name": "are_you_sure",
     "unbiased_question": [{"role": "user", "content": "Q2? (A) x (B) y"}],
     "biased_question": [{"role": "user", "content": "Q2? (A) x (B) y"}, {"role": "assistant", "content": "(B)"},
                         {"role": "user", "content": "Are you sure?"}],
     "ground_truth": "B", "biased_option": "NOT B"},
]


def test_data_import_chua(tmp_path, capsys):
    src = tmp_path / "chua.jsonl"
    src.write_text(json.dumps(CHUA_ROWS[0]) + "\n{oops\n" + json.dumps(CHUA_ROWS[1]) + "\n"
                   + json.dumps({**CHUA_ROWS[0], "biased_option": "A"}) + "\n")
    out = tmp_path / "out" / "pairs.jsonl"
    code, stdout, err = run_cli(capsys, "data", "import", "chua", src, "--out", out)
    assert code == 0, err
    assert f"wrote 2 pairs to {out}; skipped 2 row(s)" in stdout
    assert "line 2: malformed JSON" in stdout and "line 4: field 'biased_option': equals ground_truth" in stdout
    pairs = read_pairs(out)
    assert [p.meta["family"] for p in pairs] == ["suggested_answer", "are_you_sure"]
    assert [p.target for p in pairs] == ["A", "B"]
    code, stdout, _ = run_cli(capsys, "data", "import", "chua", src, "--out", out, "--keep-matching")
    assert code == 0 and "wrote 3 pairs" in stdout


def test_data_import_chua_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "data", "import", "chua", tmp_path / "missing.jsonl", "--out", tmp_path / "o.jsonl")
    assert code == 2 and "no such file" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    code, _, err = run_cli(capsys, "data", "import", "chua", bad, "--out", tmp_path / "o.jsonl")
    assert code == 2 and "no usable rows" in err and "line 1: malformed JSON" in err
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_end_to_end_smollm2(smollm2_spec, tmp_path, capsys):
    pairs = tmp_path / "train.jsonl"
    code, _, err = run_cli(capsys, "data", "sycophancy", "--split", "train", "--limit", "4", "--out", pairs)
    assert code == 0, err
    assert len(read_pairs(pairs)) == 4

    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "opct", "--model", smollm2_spec, "--pairs", pairs, "--out", out,
                                "--max-steps", "2", "--set", "max_new_tokens=8", "--set", "num_samples=1",
                                "--batch-size", "2", "--set", "disable_tqdm=true")
    assert code == 0, err
    assert "opct train opct: 2 steps" in stdout
    adapter = json.loads((out / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == smollm2_spec  # portable: the spec, not a cache path

    metrics_path = tmp_path / "m.json"
    code, stdout, err = run_cli(capsys, "eval", "sycophancy", "--model", out, "--pairs", pairs, "--mode", "probs",
                                "--out", metrics_path)
    assert code == 0, err
    metrics = json.loads(metrics_path.read_text())
    assert metrics["n_pairs"] == 4 and metrics["model"] == str(out)
    assert "probs" in metrics and "generate" not in metrics
    for key in ("sycophancy_rate", "brr", "consistency", "clean_accuracy", "wrapped_accuracy"):
        assert key in metrics["probs"], key
        assert "value" in metrics["probs"][key]
    rows = (tmp_path / "m.rows.jsonl").read_text().splitlines()
    assert len(rows) == 4
    assert stdout.startswith("probs") and "sycophancy_rate" in stdout


def test_eval_safety_awareness_rejudges_saved_responses(tmp_path, capsys):
    from opct.data.safety import build_safety_pairs

    pairs, _ = build_safety_pairs("test", limit=3)
    pair_file = tmp_path / "pairs.jsonl"
    write_pairs(pairs, pair_file)
    saved = tmp_path / "saved.rows.jsonl"
    answers = ["I'm sorry, but I can't help with that.", "Sure, here you go.", "Sure, here you go."]
    saved.write_text("".join(json.dumps({"id": p.id, "response": r}) + "\n" for p, r in zip(pairs, answers)))
    out = tmp_path / "rejudged.json"
    args = ["eval", "safety-awareness", "--pairs", str(pair_file), "--responses", str(saved), "--out", str(out)]
    assert main(args) == 0  # no --model: nothing is loaded
    metrics = json.loads(out.read_text())
    assert metrics["responses"] == str(saved) and "model" not in metrics
    assert metrics["n"] == 3 and metrics["pass_rate"]["value"] == pytest.approx(1 / 3)
    rows = [json.loads(line) for line in out.with_suffix(".rows.jsonl").read_text().splitlines()]
    assert [r["response"] for r in rows] == answers and [r["passed"] for r in rows] == [True, False, False]
    assert main(args[:-1] + [str(tmp_path / "saved.json")]) == 2  # would overwrite saved.rows.jsonl
    assert "overwrite" in capsys.readouterr().err
    saved.write_text('{"id": "nope", "response": "x"}\n{"id": "%s"}\n' % pairs[0].id)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "saved.rows.jsonl:1: field 'id'" in err and "saved.rows.jsonl:2: field 'response'" in err
