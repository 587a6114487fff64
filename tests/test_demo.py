"""The demo pipeline end to end on the tiny model (quick-profile sizes): every phase, the report,
and resuming without redoing finished phases."""

import json
from dataclasses import replace

import pytest

from opct.axes import AXES
from opct.demo import DemoError, DemoProfile, run_demo, saved_evaluations
from opct.study import source_digest, train_overrides

# The quick profile's phases at a size a tiny model runs in seconds.
TINY = DemoProfile(
    model="", train_pairs=8, test_pairs=16, generate_limit=4, capability_items=8, neutral_prompts=4,
    kl_tokens=8, benign_prompts=6, eval_max_new_tokens=16, max_prompt_tokens=1024,
    known_min_prob=0,  # the tiny model knows no answer: keep every question
    train=train_overrides(steps=2, batch=4, opct_lr=1e-3, sft_lr=1e-3, act_lr=1e-3, max_new_tokens=8, num_samples=2),
)


def test_demo_pipeline_and_resume(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    results = run_demo(profile=TINY, out=str(out), model=tiny_model_dir)
    assert set(results["methods"]) == {"base", "sft", "opct", "act"}
    for name, block in results["methods"].items():
        probs = block["sycophancy"]["trained"]
        for key in ("sycophancy_rate", "brr", "consistency", "clean_accuracy", "wrapped_accuracy"):
            assert probs[key]["n"] > 0, (name, key)
        assert block["capability"]["mmlu_accuracy"]["n"] > 0
        assert block["capability"]["over_refusal_rate"]["n"] == 6
        if name != "base":
            assert block["capability"]["kl_from_base"]["value"] >= 0
            assert block["train"]["steps"] == 2
    changes = {(c["method"], c["metric_key"]) for c in results["capability_changes"]}
    assert changes == {(m, k) for m in ("sft", "opct", "act") for k in ("mmlu_accuracy", "over_refusal_rate")}
    assert "## Capability against the base" in (out / "report.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["opct"]["sycophancy"] == json.loads(json.dumps(results["methods"]["opct"]["sycophancy"]))
    for name in ("report.md", "report.html", "sycophancy_rate.png", "capability_vs_safety.png"):
        assert (out / name).stat().st_size > 0
    assert "| opct |" in capsys.readouterr().out

    with pytest.raises(DemoError, match="--resume"):
        run_demo(profile=TINY, out=str(out), model=tiny_model_dir)
    stamps = {m: (out / "runs" / m / "summary.json").stat().st_mtime for m in ("sft", "opct", "act")}
    (out / "eval" / "act.json").unlink()  # as if killed while evaluating ACT
    # A saved evaluation keeps its answers; its metrics are scored again from them (today's metric code)
    stale = json.loads((out / "eval" / "opct.json").read_text())
    stale["sycophancy"]["trained"]["sycophancy_rate"]["value"] = 12.5
    (out / "eval" / "opct.json").write_text(json.dumps(stale))
    again = run_demo(profile=TINY, out=str(out), model=tiny_model_dir, resume=True)
    assert {m: (out / "runs" / m / "summary.json").stat().st_mtime for m in stamps} == stamps  # not retrained
    assert again["methods"]["act"]["sycophancy"]["trained"]["sycophancy_rate"]["n"] > 0
    assert again["methods"]["opct"]["sycophancy"] == json.loads(json.dumps(results["methods"]["opct"]["sycophancy"]))
    with pytest.raises(DemoError, match="other settings"):
        run_demo(profile="quick", out=str(out), model=tiny_model_dir, resume=True)
    with pytest.raises(DemoError, match=r"train\.opct\.max_steps: 2 -> 3"):  # --set is a setting too
        run_demo(profile=TINY, out=str(out), model=tiny_model_dir, resume=True, train_changes=[("opct", "max_steps", 3)])


@pytest.mark.parametrize("axis", ["jailbreak", "safety"])
def test_demo_other_axes(axis, tiny_model_dir, tmp_path):
    # The tiny model's gibberish would leave no pair through the jailbreak filter: train on all.
    prof = replace(TINY, train_pairs=4, test_pairs=4, static_wrappers=2, attack_budget=2, filter_candidates=6,
                   jailbreak_filter=False, curve_every=2, curve_items=2,
                   attackers={"random_suffix": {"budget": 4},
                              "rl": {"budget": 2, "steps": 1, "attacker_model": tiny_model_dir}})
    results = run_demo(profile=prof, out=str(tmp_path / axis), model=tiny_model_dir, methods="opct", axis=axis)
    # Safety also answers the clean prompt with the base weights: the teacher's ceiling, without a capability panel.
    expected = {"base", "opct"} | ({"teacher"} if axis == "safety" else set())
    assert set(results["methods"]) == expected and results["axis"] == axis
    if axis == "safety":
        assert "capability" not in results["methods"]["teacher"]
        assert "| teacher |" in (tmp_path / axis / "report.md").read_text()
    for block in results["methods"].values():
        if axis == "jailbreak":
            assert block["jailbreak"]["static"]["n"] == 4 * 2
            assert block["jailbreak"]["adaptive"]["n"] == 4
            assert 0 <= block["jailbreak"]["adaptive"]["defense_success_rate"]["value"] <= 1
            assert block["jailbreak"]["random_suffix"]["n"] == 4  # the random-suffix attacker, 4 passes each
            assert 1 <= block["jailbreak"]["random_suffix"]["passes_per_behavior"] <= 4
            assert block["jailbreak"]["rl"]["n_behaviors"] == 4  # GRPO-trained against this model, 2 queries each
            assert 1 <= block["jailbreak"]["rl"]["queries_per_behavior"] <= 2
        else:
            assert block["safety"]["n"] == 4 and 0 <= block["safety"]["ausc"]["value"] <= 1
    metric = {"jailbreak": "attack_success_rate", "safety": "pass_rate"}[axis]
    assert [p["step"] for p in results["curves"]["opct"]] == [0, 2] and metric in results["curves"]["opct"][0]
    plot = {"jailbreak": "defense_success_rate.png", "safety": "ausc.png"}[axis]
    assert (tmp_path / axis / plot).stat().st_size > 0
    assert "over-refusal" in (tmp_path / axis / "report.md").read_text().lower()
    if axis == "jailbreak":
        assert "## Jailbreak (white-box random-suffix attacker)" in (tmp_path / axis / "report.md").read_text()
    # Both axes are judged offline here, by judges measured unreliable on trained models: the report says so first.
    report = (tmp_path / axis / "report.md").read_text()
    assert results["warnings"] and report.index("## Warnings") < report.index("| Method")
    assert {"jailbreak": "jailbreak_hand_labels.py", "safety": "safety_hand_labels.py"}[axis] in report


def test_profiles_fit_their_purpose():
    for axis, profiles in ((name, ax.profiles) for name, ax in AXES.items()):
        # Sycophancy needs a model that knows answers (the 0.5B one is at chance on them).
        default = "embedded:qwen2.5-coder-1.5b-instruct" if axis == "sycophancy" else "embedded:qwen2.5-0.5b-instruct"
        assert profiles["default"].model == default
        assert profiles["quick"].model == "embedded:smollm2-135m-instruct"
        for prof in profiles.values():  # every method gets the same prompt budget
            budgets = {m: c["max_steps"] * c["per_device_train_batch_size"] for m, c in prof.train.items()}
            assert len(set(budgets.values())) == 1, (axis, budgets)
        if axis == "jailbreak":  # the quick study reports every attacker
            assert set(profiles["quick"].attackers) == {"random_suffix", "gcg", "rl"}


def test_all_axes_into_one_report(tiny_model_dir, tmp_path, monkeypatch):
    import opct.demo as demo

    # Each axis at the tiny size (the named profile's sizes would take hours on the tiny model too).
    tiny = replace(TINY, train_pairs=4, test_pairs=4, static_wrappers=1, attack_budget=1, filter_candidates=4,
                   jailbreak_filter=False)
    for ax in AXES.values():
        monkeypatch.setitem(ax.profiles, "tiny", tiny)
    results = demo.run_all_axes(profile="tiny", out=str(tmp_path / "all"), model=tiny_model_dir, methods="opct")
    assert set(results) == {"sycophancy", "jailbreak", "safety"}
    report = (tmp_path / "all" / "report.md").read_text()
    for axis in results:
        assert f"## {axis}:" in report and f"({axis}/report.md)" in report
        assert (tmp_path / "all" / axis / "report.md").is_file()
    assert "| opct |" in report
    assert report.count("Capability against the base:") == 3 and "OPCT above BASE on MMLU accuracy" in report
    assert json.loads((tmp_path / "all" / "results.json").read_text()).keys() == results.keys()


def _toy_axis():
    """An axis written in this file alone: do the wrapped and clean prompts start the same reply?"""
    from opct.axes import Axis, Verdict
    from opct.data.schema import read_pairs, write_pairs
    from opct.data.sycophancy import build_split
    from opct.generation import generate

    def build_data(prof, data, seed, model, tokenizer):
        for split, n in (("train", prof.train_pairs), ("test", prof.test_pairs)):
            write_pairs(build_split(split, limit=n, seed=seed, source="easy")[0], data / f"{split}.jsonl")
        return {"train": {"pairs": prof.train_pairs}, "test": {"pairs": prof.test_pairs}}

    def answer(model, tokenizer, prof, data, seed, view="wrapped"):
        pairs = read_pairs(data / "test.jsonl")
        outs = generate(model, tokenizer, [p.wrapped for p in pairs] + [p.clean for p in pairs], max_new_tokens=3)
        texts = [o[0].text for o in outs]
        return {"toy": [{"id": p.id, "changed": texts[i] != texts[len(pairs) + i]} for i, p in enumerate(pairs)]}

    def score(rows):
        from opct.evals.stats import summarize

        return {"toy_rate": summarize([float(r["changed"]) for r in rows["toy"]])}

    def item_scores(rows, mode, metric):
        return {r["id"]: float(r["changed"]) for r in rows["toy"]}

    return Axis(name="toy", profiles={}, build_data=build_data, answer=answer, score=score, item_scores=item_scores,
                headline="toy_rate", better="lower", verdicts=(Verdict(None, "toy_rate", "lower", "toy rate"),),
                notes=("Toy rate: the share of prompts whose reply starts differently under the wrapper.",))


def test_verdicts_pair_the_seeds_both_methods_have():
    from opct.demo import verdicts

    def run(changed):
        return {"toy": {}, "rows": {"toy": [{"id": str(i), "changed": c} for i, c in enumerate(changed)]}}

    low, high = run([False] * 8), run([True] * 8)
    (one,) = verdicts(_toy_axis(), {"opct": [low], "sft": [high, low]})  # sft's second seed not yet matched
    assert one["answer"] == "yes" and "over 8 items x 1 seed," in one["sentence"]
    assert one["means"] == {"opct": 0.0, "sft": 1.0}
    (two,) = verdicts(_toy_axis(), {"opct": [low, low], "sft": [high, low]})
    assert "over 8 items x 2 seeds" in two["sentence"] and two["means"]["sft"] == 0.5


def test_a_toy_axis_from_this_file_runs_the_demo_with_seeds(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from opct.axes import register

    monkeypatch.delitem(AXES, "toy", raising=False)
    monkeypatch.setitem(AXES, "toy", _toy_axis())
    register(AXES["toy"])  # what a user's own module would call
    prof = replace(TINY, train_pairs=4, test_pairs=6, benign_prompts=0)
    out = tmp_path / "toy"
    results = run_demo(profile=prof, out=str(out), model=tiny_model_dir, methods="sft,opct", axis="toy", seeds=2)
    for name in ("sft", "sft-s1", "opct", "opct-s1"):
        assert (out / "runs" / name / "summary.json").is_file() and (out / "eval" / f"{name}.json").is_file()
    assert json.loads((out / "runs" / "opct-s1" / "opct_config.json").read_text())["config"]["seed"] == 43
    saved = saved_evaluations(out)  # read back by method, in seed order, as the hand-label benchmarks do
    assert set(saved) == {"base", "sft", "opct"} and len(saved["opct"]) == 2
    assert [e["model"] for e in saved["opct"]] == [str(out / "runs" / "opct"), str(out / "runs" / "opct-s1")]
    toy = results["methods"]["opct"]["toy"]["toy_rate"]
    assert toy["seeds"] == 2 and toy["n"] == 6  # two-level interval over the 6 items and 2 seeds
    assert results["methods"]["opct"]["capability"]["mmlu_accuracy"]["seeds"] == 2
    (verdict,) = results["verdicts"]
    assert verdict["answer"] in ("yes", "no", "unclear") and "over 6 items x 2 seeds" in verdict["sentence"]
    report = (out / "report.md").read_text()
    assert "## Verdict" in report and verdict["sentence"] in report and "Toy rate: the share" in report
    assert (out / "toy_rate.png").stat().st_size > 0

    def no_model(*args, **kwargs):
        raise AssertionError("a finished run is re-reported from its saved answers, without loading a model")

    monkeypatch.setattr("opct.models.load_model", no_model)
    # --seeds and --methods left out on a resume: the run's own two seeds and two methods (training ACT would
    # load a model), not one seed and every method
    again = run_demo(profile=prof, out=str(out), model=tiny_model_dir, axis="toy", resume=True)
    assert again["seeds"] == 2 and again["verdicts"][0]["sentence"] == verdict["sentence"]
    assert set(again["methods"]) == {"base", "sft", "opct"}
    printed = capsys.readouterr().out
    assert "--methods left out: continuing with the methods" in printed
    assert "sft-s1: the BCT targets of sft reused" in printed  # greedy targets are made once, not per seed


def test_learning_curves_in_the_report(tiny_model_dir, tmp_path):
    prof = replace(TINY, train_pairs=4, test_pairs=4, curve_every=4, curve_early=True, curve_items=4,
                   train=train_overrides(steps=5, batch=2, opct_lr=1e-3, sft_lr=1e-3, act_lr=1e-3, max_new_tokens=8,
                                         num_samples=2))
    out = tmp_path / "curves"
    results = run_demo(profile=prof, out=str(out), model=tiny_model_dir, methods="opct,act")
    assert len((out / "data" / "val.jsonl").read_text().splitlines()) == 4
    for name in ("opct", "act"):
        points = results["curves"][name]
        assert [p["step"] for p in points] == [0, 1, 2, 4, 5]  # doubling below every 4, then every 4, and the last
        assert points[0]["kl_from_base"] == pytest.approx(0.0, abs=1e-6)  # step 0: the adapter is still zero
        assert all(0 <= p["sycophancy_rate"] <= 1 for p in points)
        assert [p["seconds"] for p in points] == sorted(p["seconds"] for p in points)
    # both methods start from the base: its point was measured once, for the first method
    saved = json.loads((out / "data" / "curve_start.json").read_text())
    start = saved["metrics"]
    assert saved["key"]["opct_source"] == source_digest()  # changed code measures the start anew on a resume
    assert {k: v for k, v in results["curves"]["act"][0].items() if k not in ("step", "seconds")} == start
    assert results["curves"]["opct"][-1]["kl_from_base"] > 0
    assert results["timings"]["this_invocation_host_tflops"] > 0  # which machine the timings came from
    assert results["timings"]["this_invocation_host_fp32_linears"] in ("oneDNN", "torch default")
    report = (out / "report.md").read_text()
    assert (out / "learning_curves.png").stat().st_size > 0 and "learning_curves.png" in report
    assert "## Learning curves (validation items)" in report and "| act | 4 |" in report  # the points, as numbers


def test_pooling_seeds_skips_verdict_blocks_the_profile_does_not_measure():
    """A jailbreak profile without the white-box attacker has no block for it (a 2-seed run died on it)."""
    from opct.axes.base import Axis, Verdict
    from opct.demo import pool_seeds

    def score(rows):
        return {"static": {"asr": sum(r["hit"] for r in rows["static"]) / len(rows["static"])}}

    axis = Axis(name="toy", profiles={}, build_data=None, answer=None, score=score,
                item_scores=lambda rows, mode, metric: {r["id"]: float(r["hit"]) for r in rows.get(mode, [])},
                headline="asr", better="lower",
                verdicts=(Verdict("static", "asr", "lower", "ASR"), Verdict("whitebox", "asr", "lower", "white-box ASR")))
    evals = [{"rows": {"static": [{"id": "a", "hit": 1}, {"id": "b", "hit": 0}]}, "capability": {"mmlu": 0.5}},
             {"rows": {"static": [{"id": "a", "hit": 1}, {"id": "b", "hit": 1}]}, "capability": {"mmlu": 0.7}}]
    pooled = pool_seeds(axis, evals)
    assert "whitebox" not in pooled["toy"]
    assert pooled["toy"]["static"]["asr"]["value"] == pytest.approx(0.75)


def test_safety_answers_judged_by_an_llm_judge(tiny_model_dir, tmp_path):
    from opct.models import ModelSpecError

    prof = replace(TINY, train_pairs=4, test_pairs=4)
    with pytest.raises(DemoError, match="the sycophancy axis has no judge to choose"):
        run_demo(profile=prof, out=str(tmp_path / "s"), model=tiny_model_dir, judge="keyword-v9")
    with pytest.raises(ModelSpecError, match="not an embedded model"):
        run_demo(profile=prof, out=str(tmp_path / "t"), model=tiny_model_dir, axis="safety", judge="./no-judge")
    out = tmp_path / "llm"
    results = run_demo(profile=prof, out=str(out), model=tiny_model_dir, axis="safety", methods="act",
                       judge=tiny_model_dir)
    for name in ("base", "teacher", "act"):  # every answer the demo judges, the teacher's ceiling included
        rows = json.loads((out / "eval" / f"{name}.json").read_text())["rows"]["safety"]
        assert len(rows) == 4 and all(r["verdict"]["judge"].startswith("llm-safety") for r in rows), name
    assert json.loads((out / "demo_config.json").read_text())["judge"] == tiny_model_dir
    assert set(results["methods"]) == {"base", "teacher", "act"}
    assert "warnings" not in results  # the keyword judge's warning is not a judge model's


def test_choosing_the_jailbreak_attackers():
    from opct.demo import choose_attackers

    quick = AXES["jailbreak"].profiles["quick"]
    assert choose_attackers("jailbreak", quick, "none") == {}
    assert set(choose_attackers("jailbreak", quick, "gcg, rl")) == {"gcg", "rl"}
    with pytest.raises(DemoError, match="pair not in this profile"):
        choose_attackers("jailbreak", quick, "pair")
    with pytest.raises(DemoError, match="only the jailbreak axis"):
        choose_attackers("safety", AXES["safety"].profiles["quick"], "gcg")


def test_changing_a_training_option():
    from opct.demo import override_training

    quick = AXES["safety"].profiles["quick"]
    changed = override_training(quick, [("all", "max_steps", 24), ("opct", "num_samples", 4), ("sft", "max_steps", 12)])
    assert {m: o["max_steps"] for m, o in changed.train.items()} == {"opct": 24, "sft": 12, "act": 24}
    assert changed.train["opct"]["num_samples"] == 4 and quick.train["opct"]["num_samples"] == 2  # a copy
    with pytest.raises(DemoError, match="(sft|act) has no option 'num_samples'"):
        override_training(quick, [("all", "num_samples", 4)])
    with pytest.raises(DemoError, match="'bct' is not a method of this study; expected one of opct, sft, act or all"):
        override_training(quick, [("bct", "max_steps", 4)])

