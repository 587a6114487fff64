"""The shared study machinery: run directories and the paired verdict."""

import json

import pytest

from opct.errors import UserError
from opct.study import (IN_USE, _process_start, capability_changes, claim_run_dir, compare_methods, mean_over_seeds,
                        methods_to_run, record_methods, reuse_first_seed_targets, seed_tag, split_seed_tag,
                        trained_runs)


def test_verdict_yes_no_unclear():
    items = [f"q{i}" for i in range(40)]
    low, high = dict.fromkeys(items, 0.0), dict.fromkeys(items, 1.0)
    mixed = {i: float(n % 2) for n, i in enumerate(items)}
    yes = compare_methods("opct", "sft", [low], [high], "sycophancy rate", "lower")
    assert yes["answer"] == "yes" and yes["sentence"].startswith("OPCT below SFT on sycophancy rate: yes (OPCT 0.000")
    assert "40 items x 1 seed, 40 scored differently, sign-flip p < 0.001;" in yes["sentence"]
    assert compare_methods("opct", "sft", [high], [low], "m", "lower")["answer"] == "no"
    assert compare_methods("opct", "sft", [high], [low], "m", "higher")["answer"] == "yes"
    assert compare_methods("opct", "sft", [high], [low], "m", "higher")["sentence"].startswith("OPCT above SFT")
    assert compare_methods("opct", "sft", [mixed], [dict(mixed)], "m", "lower")["answer"] == "tied"  # same on every item
    shifted = {k: 1.0 - v for k, v in mixed.items()}
    assert compare_methods("opct", "sft", [mixed], [shifted], "m", "lower")["answer"] == "unclear"
    assert compare_methods("opct", "sft", [{"a": 1.0}], [{"b": 0.0}], "m", "lower")["answer"] == "no data"


def test_verdict_needs_more_than_a_few_differing_items():
    """4 of 128 items differ, all one way: the bootstrap alone excluded 0 (an exact sign test gives
    p = 0.125); 8 of 8 (p = 0.008) is a verdict."""
    items = [f"q{i}" for i in range(128)]
    sft = dict.fromkeys(items, 0.0)
    four = {**sft, **dict.fromkeys(items[:4], 1.0)}
    eight = {**sft, **dict.fromkeys(items[:8], 1.0)}
    assert compare_methods("opct", "sft", [four], [sft], "m", "lower")["answer"] == "unclear"
    assert compare_methods("opct", "sft", [four, four], [sft, sft], "m", "lower")["answer"] == "unclear"
    assert compare_methods("opct", "sft", [eight], [sft], "m", "lower")["answer"] == "no"
    assert compare_methods("opct", "sft", [sft], [eight], "m", "lower")["answer"] == "yes"
    # pass rates per fact, 4 of 20 facts 0.25 higher: the bootstrap alone excluded 0
    facts = [f"f{i}" for i in range(20)]
    base = dict.fromkeys(facts, 0.0)
    up = {**base, **dict.fromkeys(facts[:4], 0.25)}
    assert compare_methods("opct", "sft", [up], [base], "pass rate", "higher")["answer"] == "unclear"
    assert compare_methods("opct", "sft", [up], [base], "pass rate", "higher")["difference"]["ci_low"] > 0


def test_capability_changes_pair_each_method_with_the_base_over_the_panels_items():
    def evaluation(correct: list[int], refused: list[bool] | None = None) -> dict:
        rows = {"static": [], "mmlu": [{"id": f"q{i}", "correct": float(c)} for i, c in enumerate(correct)]}
        if refused is not None:
            rows["benign"] = [{"id": f"b{i}", "refused": r} for i, r in enumerate(refused)]
        return {"rows": rows}

    base = [1] * 30
    evals = {"base": [evaluation(base, [False] * 20)], "teacher": [{"rows": {"static": []}}],
             "sft": [evaluation([0] * 12 + [1] * 18, [True] * 20), evaluation([0] * 10 + [1] * 20, [True] * 20)],
             "opct": [evaluation(base, [False] * 20)],
             "act": [{"rows": {"static": [], "benign": [{"id": f"b{i}", "refused": False} for i in range(20)]}}]}
    changes = {(c["method"], c["metric_key"]): c for c in capability_changes(evals)}
    assert set(changes) == {("sft", "mmlu_accuracy"), ("opct", "mmlu_accuracy"), ("sft", "over_refusal_rate"),
                            ("opct", "over_refusal_rate"), ("act", "over_refusal_rate")}  # act's run kept no MMLU rows
    sft = changes[("sft", "mmlu_accuracy")]
    assert sft["answer"] == "no" and sft["difference"]["seeds"] == 2  # a loss on 11 of 30 items per seed
    assert sft["difference"]["value"] == pytest.approx(-11 / 30)
    assert sft["sentence"].startswith("SFT above BASE on MMLU accuracy (held-out subjects): no")
    assert changes[("opct", "mmlu_accuracy")]["answer"] == "tied"
    assert changes[("sft", "over_refusal_rate")]["answer"] == "no"  # refuses every benign prompt the base answered
    assert capability_changes({"sft": evals["sft"]}) == []  # no base, nothing to compare with


def test_a_resume_keeps_the_methods_the_run_was_started_with(tmp_path, capsys):
    known = ("sft", "opct", "act")
    assert methods_to_run(None, tmp_path, resume=True) is None  # no record (a new run, or an old one): the default
    record_methods(tmp_path, ["opct", "sft"], known)
    assert methods_to_run(None, tmp_path, resume=False) is None
    assert methods_to_run(None, tmp_path, resume=True) == "sft,opct"
    assert "continuing with the methods" in capsys.readouterr().out
    assert methods_to_run("act", tmp_path, resume=True) == "act"  # given: as given
    record_methods(tmp_path, ["act"], known)  # a resume that adds a method adds it to the record
    assert methods_to_run(None, tmp_path, resume=True) == "sft,opct,act"


def test_claim_run_dir_and_seed_tags(tmp_path, capsys):
    path = tmp_path / "run" / "config.json"
    claim_run_dir(path, {"a": 1}, resume=False, error=UserError)
    with pytest.raises(UserError, match="--resume"):
        claim_run_dir(path, {"a": 1}, resume=False, error=UserError)
    with pytest.raises(UserError, match=r"other settings .*a: 1 -> 2"):
        claim_run_dir(path, {"a": 2}, resume=True, error=UserError)
    claim_run_dir(path, {"a": 1}, resume=True, error=UserError)
    assert "resuming the run in" in capsys.readouterr().out
    # A setting newer than the run continues it only at its default (the behaviour from before it existed).
    with pytest.raises(UserError, match=r"b: '\(absent\)' -> 3"):
        claim_run_dir(path, {"a": 1, "b": 3}, resume=True, error=UserError, defaults={"b": 0})
    claim_run_dir(path, {"a": 1, "b": 0}, resume=True, error=UserError, defaults={"b": 0})
    assert json.loads(path.read_text()) == {"a": 1, "b": 0}
    assert [seed_tag(k) for k in range(3)] == ["", "-s1", "-s2"]
    assert [split_seed_tag(f"self_certainty{seed_tag(k)}") for k in range(3)] == [("self_certainty", k) for k in range(3)]
    assert split_seed_tag("x-sample") == ("x-sample", 0)  # "-s" not followed by a seed number is part of the name


def test_trained_runs_lists_each_methods_finished_seeds_in_order(tmp_path):
    assert trained_runs(tmp_path) == {}
    for name in ("opct-s10", "opct", "opct-s2", "x-sample", "sft-s1", "sft"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "summary.json").write_text("{}")
    (tmp_path / "runs" / "act").mkdir()  # unfinished: no summary
    found = {m: [d.name for d in runs] for m, runs in trained_runs(tmp_path).items()}
    assert found == {"opct": ["opct", "opct-s2", "opct-s10"], "sft": ["sft", "sft-s1"], "x-sample": ["x-sample"]}


def test_later_seeds_of_a_greedy_bct_run_reuse_the_first_seeds_targets(tmp_path):
    runs = tmp_path / "runs"
    (runs / "sft").mkdir(parents=True)
    (runs / "sft" / "bct_targets.jsonl").write_text('{"id": "a", "completion": "x"}\n')
    reuse_first_seed_targets(runs, "sft", 0, "sft", {})  # the first seed makes its own
    reuse_first_seed_targets(runs, "sft", 1, "sft", {"target_temperature": 0.7})  # sampled: each seed its own
    reuse_first_seed_targets(runs, "sft", 1, "sft", {"targets_file": "mine.jsonl"})  # the user's file wins
    reuse_first_seed_targets(runs, "opct", 1, "opct", {})  # no targets to share
    assert not (runs / "sft-s1").exists() and not (runs / "opct-s1").exists()
    reuse_first_seed_targets(runs, "sft", 2, "sft", {"target_temperature": 0.0})
    assert (runs / "sft-s2" / "bct_targets.jsonl").read_text() == '{"id": "a", "completion": "x"}\n'
    (runs / "sft-s2" / "bct_targets.jsonl").write_text("its own\n")
    reuse_first_seed_targets(runs, "sft", 2, "sft", {})  # a resumed seed keeps what it has
    assert (runs / "sft-s2" / "bct_targets.jsonl").read_text() == "its own\n"
    (runs / "bct").mkdir()  # the audit's BCT method trains with the sft trainer
    (runs / "bct" / "bct_targets.jsonl").write_text("t\n")
    reuse_first_seed_targets(runs, "bct", 1, "sft", {})
    assert (runs / "bct-s1" / "bct_targets.jsonl").read_text() == "t\n"


def test_a_run_in_use_by_another_process_is_not_entered(tmp_path, capsys):
    """A second process on the same run directory stops; a mark left by a process that is gone is taken over."""
    import os
    import subprocess
    import sys

    path = tmp_path / "run" / "config.json"
    claim_run_dir(path, {"a": 1}, resume=False, error=UserError)
    mark = path.parent / IN_USE
    assert mark.read_text().split()[0] == str(os.getpid())
    claim_run_dir(path, {"a": 1}, resume=True, error=UserError)  # this process again: its own run
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mark.write_text(f"{other.pid} {_process_start(other.pid)}\n")
        with pytest.raises(UserError, match=rf"in use by process {other.pid}"):
            claim_run_dir(path, {"a": 1}, resume=True, error=UserError)
        assert mark.read_text().split()[0] == str(other.pid)  # left to its owner
        if _process_start(other.pid):  # where /proc tells start times: a reused pid is not the run's process
            mark.write_text(f"{other.pid} 1\n")
            claim_run_dir(path, {"a": 1}, resume=True, error=UserError)
            mark.write_text(f"{other.pid} {_process_start(other.pid)}\n")
    finally:
        other.kill()
        other.wait()
    capsys.readouterr()
    claim_run_dir(path, {"a": 1}, resume=True, error=UserError)  # its holder is gone now
    assert f"left by process {other.pid}, which has ended" in capsys.readouterr().out
    assert mark.read_text().split()[0] == str(os.getpid())
    refused = tmp_path / "refused" / "config.json"
    refused.parent.mkdir()
    refused.write_text(json.dumps({"a": 2}))
    with pytest.raises(UserError, match="other settings"):
        claim_run_dir(refused, {"a": 1}, resume=True, error=UserError)
    assert not (refused.parent / IN_USE).exists()  # a refused run is not marked


def test_a_damaged_settings_file_is_a_clear_error(tmp_path):
    path = tmp_path / "run" / "config.json"
    path.parent.mkdir()
    path.write_text('{"a": 1,\n  "b": }')
    with pytest.raises(UserError, match=r"config.json:2: not the JSON object of settings .*column 8"):
        claim_run_dir(path, {"a": 1}, resume=True, error=UserError)
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="got list"):
        claim_run_dir(path, {"a": 1}, resume=True, error=UserError)
    assert path.read_text() == "[1, 2]"  # nothing overwritten


def test_a_retired_setting_blocks_a_resume_only_when_it_was_used(tmp_path):
    """whitebox_budget (gone; now the `attackers` setting) at 0 meant no white-box attacker."""
    old = tmp_path / "old" / "config.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"a": 1, "whitebox_budget": 0}))
    claim_run_dir(old, {"a": 1}, resume=True, error=UserError)
    used = tmp_path / "used" / "config.json"
    used.parent.mkdir()
    used.write_text(json.dumps({"a": 1, "whitebox_budget": 64}))
    with pytest.raises(UserError, match=r"whitebox_budget: 64 -> '\(absent\)'"):
        claim_run_dir(used, {"a": 1}, resume=True, error=UserError)


def test_mean_over_seeds():
    a = {"mmlu_accuracy": {"value": 0.4, "ci_low": 0.3, "ci_high": 0.5, "n": 10}, "note": "x"}
    b = {"mmlu_accuracy": {"value": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 10}, "note": "x"}
    m = mean_over_seeds([a, b])
    assert m["mmlu_accuracy"] == {"value": pytest.approx(0.5), "ci_low": 0.3, "ci_high": 0.7, "n": 10, "seeds": 2}
    assert m["note"] == "x"


def test_chosen_methods_checks_names_and_seeds():
    from opct.study import chosen_methods

    known = ("sft", "opct", "act")
    assert chosen_methods(None, known, 1, ValueError) == ["sft", "opct", "act"]
    assert chosen_methods(None, known, 1, ValueError, default=("opct",)) == ["opct"]
    assert chosen_methods(" opct, sft ,", known, 2, ValueError) == ["opct", "sft"]
    with pytest.raises(ValueError, match="unknown method\\(s\\) vibes; expected a subset of sft, opct, act"):
        chosen_methods("opct,vibes", known, 1, ValueError)
    with pytest.raises(ValueError, match="--seeds must be at least 1, got 0"):
        chosen_methods("opct", known, 0, ValueError)


def test_an_audit_from_before_a_profile_setting_resumes(tmp_path):
    from dataclasses import asdict

    from opct.audit.profiles import PROFILES, AuditProfile
    from opct.study import profile_defaults

    now = {"organism": "reward_hacking", **asdict(PROFILES["default"].for_organism("reward_hacking"))}
    path = tmp_path / "audit_config.json"
    path.write_text(json.dumps({k: v for k, v in now.items() if k != "per_organism"}))  # as if newer than the run
    claim_run_dir(path, now, resume=True, error=UserError, defaults=profile_defaults(AuditProfile))
    with pytest.raises(UserError, match="per_organism"):
        claim_run_dir(path, {**now, "per_organism": {"spurious": {}}}, resume=True, error=UserError,
                      defaults=profile_defaults(AuditProfile))


def test_kept_says_what_a_resume_keeps(tmp_path, capsys):
    from opct.study import kept

    path = tmp_path / "eval" / "base.json"
    assert not kept(path) and capsys.readouterr().out == ""
    path.parent.mkdir()
    path.write_text("{}")
    assert kept(path) and f"kept from the earlier run: {path}" in capsys.readouterr().out


def test_training_block_averages_seeds_and_leaves_curve_points_out():
    from opct.study import train_block

    seeds = [{"steps": 16, "seconds": 500.0, "curve_seconds": 200.0, "train_loss": 0.4, "last_log": {"loss": 0.2}},
             {"steps": 16, "seconds": 420.0, "curve_seconds": 180.0, "train_loss": 0.2, "last_log": {"loss": 0.1}}]
    block = train_block(seeds)
    assert block["seconds"] == 270.0 and block["curve_seconds"] == 190.0 and block["seeds"] == 2
    assert block["train_loss"] == pytest.approx(0.3) and block["loss"] == pytest.approx(0.15)
    # a summary from before curve_seconds: its seconds are shown as they are
    old = train_block([{k: v for k, v in s.items() if k != "curve_seconds"} for s in seeds])
    assert old["seconds"] == 460.0 and "curve_seconds" not in old


def test_versions_name_the_source_that_measured():
    from opct.study import source_digest, versions

    digest = source_digest()
    assert len(digest) == 16 and int(digest, 16) >= 0 and versions()["opct_source"] == digest


def test_host_speed_measures_a_matmul():
    from opct.study import host_speed

    host = host_speed(size=512, repeats=2)
    assert host["device"] in ("cpu", "cuda") and host["tflops"] > 0 and host["threads"] >= 1
    assert host["dtype"] in ("bfloat16", "float32")


def test_host_speed_names_the_fp32_linear_kernel(monkeypatch):
    from opct.study import host_speed, host_timings

    for forced, kernel in (("1", "oneDNN"), ("0", "torch default")):
        monkeypatch.setenv("OPCT_ONEDNN", forced)
        host = host_speed(size=64, repeats=1)
        assert host["fp32_linears"] == (kernel if host["device"] == "cpu" else "torch default")
        assert host_timings(host)["this_invocation_host_fp32_linears"] == host["fp32_linears"]
