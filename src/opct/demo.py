"""`opct demo`: a consistency-training study in one command, on one axis (`opct.axes`).

Phases, each leaving a file that marks it done (so `--resume` skips it):
  1. data      DIR/data/train.jsonl + the axis's test set
  2. base eval DIR/eval/base.json (and DIR/eval/teacher.json where the axis has a teacher ceiling)
  3. training  DIR/runs/<method><tag>/final   (SFT/BCT, OPCT, ACT from the same base, same prompts;
               one run per training seed: tag "" for the first, "-s1", "-s2", ... after)
  4. evals     DIR/eval/<method><tag>.json    (the axis + the capability panel)
  5. report    DIR/results.json, DIR/report.md, DIR/report.html, with the verdict "OPCT below/above
               SFT: yes / no / tied / unclear" for each of the axis's verdict metrics
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Sequence

from opct.axes import AXES, Axis
from opct.errors import UserError
from opct.files import write_json
from opct.study import (CAPABILITY_ROWS, DemoProfile, ModelsOnDemand, announce_host, capability_changes,
                        capability_panel, chosen_methods, claim_run_dir, compare_methods, host_timings, kept,
                        learning_curve_callback, mean_over_seeds, methods_to_run, phase, pool_seed_rows,
                        profile_defaults, record_methods, release_memory, reuse_first_seed_targets, seed_tag,
                        seeds_to_run, split_seed_tag, train_block, versions, TRAINING_SEED)

METHODS = ("sft", "opct", "act")

__all__ = ["METHODS", "DemoError", "DemoProfile", "evaluate_method", "override_training", "resolve_profile",
           "run_all_axes", "run_demo"]


class DemoError(UserError):
    pass


def resolve_profile(axis: str, profile: "str | DemoProfile", model: str | None) -> tuple[str, DemoProfile, Axis]:
    if axis not in AXES:
        raise DemoError(f"unknown axis {axis!r}; expected one of {', '.join(AXES)}")
    ax = AXES[axis]
    if isinstance(profile, DemoProfile):  # a custom study from Python
        name, prof = "custom", profile
    elif profile in ax.profiles:
        name, prof = profile, ax.profiles[profile]
    else:
        raise DemoError(f"unknown profile {profile!r}; expected one of {', '.join(ax.profiles)}")
    return name, (replace(prof, model=model) if model else prof), ax


def evaluate_method(axis: Axis, spec: str, base_model, tokenizer, prof: DemoProfile, data: Path, seed: int,
                    is_base: bool) -> dict[str, Any]:
    """The axis's metrics and the capability panel for one model. A trained model is its base with
    the adapter merged in place: the KL reference is the same weights with the adapter disabled
    (peft unmerges it), so no second copy of the base is held (7 GB for the 1.5B model in fp32)."""
    from opct.evals.capability import load_with_base_view

    model, base_model = (base_model, base_model) if is_base else load_with_base_view(spec)
    start = time.time()
    metrics, rows = axis.evaluate(model, tokenizer, prof, data, seed)
    timings = {f"{axis.name}_s": round(time.time() - start, 1)}
    start = time.time()
    capability, capability_rows = capability_panel(model, base_model, tokenizer, prof, is_base)
    timings["capability_s"] = round(time.time() - start, 1)
    return {"model": spec, axis.name: metrics, "capability": capability, "rows": {**rows, **capability_rows},
            "timings": timings}


def evaluate_teacher(axis: Axis, base_model, tokenizer, prof: DemoProfile, data: Path, seed: int) -> dict[str, Any]:
    """The base model answering the clean prompt: what OPCT's teacher sees, and the ceiling a
    consistency method can reach (no capability panel: the weights are the base's)."""
    start = time.time()
    metrics, rows = axis.evaluate(base_model, tokenizer, prof, data, seed, view="clean")
    return {"model": f"{prof.model} (clean prompt)", axis.name: metrics, "rows": rows,
            "timings": {f"{axis.name}_s": round(time.time() - start, 1)}}


def pool_seeds(axis: Axis, evals: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's metrics over its training seeds: the axis's metrics on every seed's answers
    together; each verdict metric that is a mean over items gets a two-level interval (seeds, then
    items); capability metrics are means over seeds. Metrics are scored afresh from the saved
    answers, so a resumed run reports with today's metric code."""
    from opct.evals.stats import seeded_summary

    if len(evals) == 1:
        return {axis.name: axis.score(answer_rows(evals[0])), "capability": evals[0]["capability"]}
    pooled_rows = {key: pool_seed_rows([e["rows"][key] for e in evals]) for key in answer_rows(evals[0])}
    metrics = axis.score(pooled_rows)
    for v in axis.verdicts:
        if v.item_mean and (not v.mode or v.mode in metrics):  # a block this profile measures
            block = metrics[v.mode] if v.mode else metrics
            block[v.metric] = seeded_summary([axis.item_scores(e["rows"], v.mode, v.metric) for e in evals])
    return {axis.name: metrics, "capability": mean_over_seeds([e["capability"] for e in evals])}


def saved_evaluations(root: str | Path) -> dict[str, list[dict[str, Any]]]:
    """A demo run's evaluations read back from ROOT/eval/NAME.json as `run_demo` writes them:
    {"base": [...], "teacher": [...], method: [first seed's, second seed's, ...]}."""
    evals: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(root, "eval").glob("*.json"), key=lambda p: split_seed_tag(p.stem)):
        evals.setdefault(split_seed_tag(path.stem)[0], []).append(json.loads(path.read_text()))
    return evals


def answer_rows(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The axis's saved answers of one evaluation (the capability panel's rows left out)."""
    return {key: rows for key, rows in evaluation["rows"].items() if key not in CAPABILITY_ROWS}


def verdicts(axis: Axis, evals: dict[str, list[dict[str, Any]]], a: str = "opct", b: str = "sft") -> list[dict]:
    """The paired comparison of `a` against `b` on each of the axis's verdict metrics, over the training
    seeds both have (a run stopped between two methods' seeds has more of one)."""
    if a not in evals or b not in evals:
        return []
    seeds = min(len(evals[a]), len(evals[b]))
    out = []
    for v in axis.verdicts:
        if v.mode and v.mode not in evals[a][0][axis.name]:  # a block this run's profile does not measure
            continue
        scores = {m: [axis.item_scores(e["rows"], v.mode, v.metric) for e in evals[m][:seeds]] for m in (a, b)}
        out.append({"mode": v.mode, **compare_methods(a, b, scores[a], scores[b], v.title, v.better)})
    return out


def choose_attackers(axis: str, prof: DemoProfile, names: str) -> dict[str, dict[str, Any]]:
    """`--attackers`: "none", or a comma-separated subset of the profile's extra attackers."""
    if axis != "jailbreak":
        raise DemoError(f"--attackers: only the jailbreak axis has attackers, not {axis}")
    chosen = [] if names.strip() == "none" else [n.strip() for n in names.split(",") if n.strip()]
    bad = [n for n in chosen if n not in prof.attackers]
    if bad:
        raise DemoError(f"--attackers: {', '.join(bad)} not in this profile; expected none or a subset of "
                        + (", ".join(prof.attackers) or "(none: the profile has no extra attackers)"))
    return {n: prof.attackers[n] for n in chosen}


def override_training(prof: DemoProfile, changes: Sequence[tuple[str, str, Any]]) -> DemoProfile:
    """`--set METHOD.KEY=VALUE`, in order: one training option of one method ("all": of every method
    the profile trains), checked against the method's config class."""
    from opct.trainers.run import config_class

    train = {m: dict(options) for m, options in prof.train.items()}
    for method, key, value in changes:
        if method != "all" and method not in train:
            raise DemoError(f"--set {method}.{key}: {method!r} is not a method of this study; expected one of "
                            f"{', '.join(train)} or all")
        for m in train if method == "all" else [method]:
            if key not in {f.name for f in fields(config_class(m)[0])}:
                raise DemoError(f"--set {method}.{key}: {m} has no option {key!r} (`opct train {m} --help-config` "
                                "lists them)")
            train[m][key] = value
    return replace(prof, train=train)


def run_demo(profile: "str | DemoProfile" = "default", out: str | None = None, model: str | None = None,
             methods: str | None = None, resume: bool = False, seed: int = 0, axis: str = "sycophancy",
             seeds: int | None = None, judge: str | None = None, attackers: str | None = None,
             train_changes: Sequence[tuple[str, str, Any]] = ()) -> dict[str, Any]:
    from opct.models import load_tokenizer
    from opct.report import results_table, write_report
    from opct.trainers.run import train

    profile, prof, ax = resolve_profile(axis, profile, model)
    if judge and judge != prof.judge:
        if not ax.judged:
            raise DemoError(f"--judge: the {axis} axis has no judge to choose (only "
                            + ", ".join(n for n, a in AXES.items() if a.judged) + " has)")
        if judge != "keyword":
            from opct.serving import check_backend

            check_backend(judge)
        prof = replace(prof, judge=judge)
    if attackers is not None:
        prof = replace(prof, attackers=choose_attackers(axis, prof, attackers))
    if train_changes:
        prof = override_training(prof, train_changes)
    root = Path(out or (f"runs/demo-{profile}" if axis == "sycophancy" else f"runs/demo-{axis}-{profile}"))
    seeds = seeds_to_run(seeds, root, resume)
    chosen = chosen_methods(methods_to_run(methods, root, resume), METHODS, seeds, DemoError)
    settings = {"axis": axis, "profile": profile, "seed": seed, **asdict(prof)}
    # Seeds and methods are not settings: a run continued with more of them keeps the ones it has.
    claim_run_dir(root / "demo_config.json", settings, resume, DemoError, defaults=profile_defaults())
    record_methods(root, chosen, METHODS)
    started = time.time()
    host = announce_host("opct demo")
    timings: dict[str, float] = {}
    runs = [(m, k) for k in range(seeds) for m in chosen]
    tokenizer = load_tokenizer(prof.model)
    models = ModelsOnDemand()

    phase("1/5 building pairs")
    data = root / "data"
    if not kept(data / "report.json"):
        start = time.time()
        report = ax.build_data(prof, data, seed, models(prof.model), tokenizer)
        write_json(data / "report.json", {**report, "seconds": round(time.time() - start, 1)})
    print(f"  {data / 'train.jsonl'}: {json.loads((data / 'report.json').read_text())['train']['pairs']} train pairs")

    phase("2/5 evaluating the base model")
    evals: dict[str, list[dict[str, Any]]] = {}
    base_path = root / "eval" / "base.json"
    if not kept(base_path):
        write_json(base_path, evaluate_method(ax, prof.model, models(prof.model), tokenizer, prof, data, seed, is_base=True))
    evals["base"] = [json.loads(base_path.read_text())]
    print("  base: " + ax.summary(ax.score(answer_rows(evals["base"][0]))))
    if ax.teacher:
        teacher_path = root / "eval" / "teacher.json"
        if not kept(teacher_path):
            write_json(teacher_path, evaluate_teacher(ax, models(prof.model), tokenizer, prof, data, seed))
        evals["teacher"] = [json.loads(teacher_path.read_text())]
        print("  teacher: " + ax.summary(ax.score(answer_rows(evals["teacher"][0]))))

    summaries: dict[str, list[dict[str, Any]]] = {}
    models.clear()  # training loads its own copy: never hold two (7 GB each for the 1.5B model in fp32)
    for i, (method, k) in enumerate(runs):
        name = f"{method}{seed_tag(k)}"
        phase(f"3/5 training {name} ({i + 1}/{len(runs)})")
        run_dir = root / "runs" / name
        summary_path = run_dir / "summary.json"
        if not kept(summary_path):
            overrides = {**prof.train[method], **({"seed": TRAINING_SEED + k} if k else {})}
            reuse_first_seed_targets(root / "runs", method, k, method, overrides)
            curve = learning_curve_callback(ax, prof, data, tokenizer)
            train(method, prof.model, str(data / "train.jsonl"), str(run_dir), overrides, resume=True,
                  callbacks=[curve] if curve else None)
            release_memory()
        summaries.setdefault(method, []).append(json.loads(summary_path.read_text()))
        timings[f"train_{name}_s"] = summaries[method][-1]["seconds"]

    for i, (method, k) in enumerate(runs):
        name = f"{method}{seed_tag(k)}"
        phase(f"4/5 evaluating {name} ({i + 1}/{len(runs)})")
        path = root / "eval" / f"{name}.json"
        if not kept(path):
            write_json(path, evaluate_method(ax, str(root / "runs" / name), None, tokenizer, prof, data, seed,
                                             is_base=False))
            release_memory()
        evals.setdefault(method, []).append(json.loads(path.read_text()))
        print(f"  {name}: " + ax.summary(ax.score(answer_rows(evals[method][-1]))))

    phase("5/5 report")
    data_report = json.loads((data / "report.json").read_text())
    judged = verdicts(ax, evals)
    results = {
        "title": f"opct demo ({profile}): {axis}",
        "axis": axis,
        "model": prof.model,
        "profile": profile,
        "seeds": seeds,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "methods": {name: {**(pool_seeds(ax, e) if "capability" in e[0] else {axis: ax.score(answer_rows(e[0]))}),
                           **({"train": train_block(summaries[name])} if name in summaries else {})}
                    for name, e in evals.items()},
        "verdicts": judged,
        "capability_changes": capability_changes(evals),
        "curves": {name: [json.loads(x) for x in path.read_text().splitlines()]
                   for name, path in ((f"{m}{seed_tag(k)}", root / "runs" / f"{m}{seed_tag(k)}" / "curve.jsonl")
                                      for m, k in runs) if path.exists()},
        "configs": {"profile": settings, "train": {m: prof.train[m] for m in chosen}},
        "data": data_report,
        "timings": {"data_s": data_report.get("seconds"), **timings,
                    **{f"eval_{k}{seed_tag(i)}": v["timings"] for k, es in evals.items() for i, v in enumerate(es)},
                    "this_invocation_s": round(time.time() - started, 1), **host_timings(host)},
        "versions": versions(),
    }
    warning = ax.judge_warning(prof) if ax.judge_warning else None
    if warning:
        results["warnings"] = [warning]
    notes = []
    if seeds > 1:
        notes.append(f"{seeds} training seeds per method ({TRAINING_SEED}..{TRAINING_SEED + seeds - 1}): each "
                     "metric pools every seed's answers; verdict metrics have a two-level interval (seeds, "
                     "then items); capability metrics are means over seeds, spanning the seeds' intervals; "
                     "training seconds and losses are means over seeds.")
    if any("curve_seconds" in m.get("train", {}) for m in results["methods"].values()):
        notes.append("Training seconds: the method's own time, from building its trainer (SFT's targets) to the "
                     "saved adapter; measuring the learning-curve points is left out and shown in its own column.")
    if notes:
        results["notes"] = notes
    write_json(root / "results.json", results)
    md, html = write_report(results, root)
    for mode in [m for m in ax.modes if m in evals["base"][0][axis]] or [None]:
        print()
        print(results_table(results, axis=axis, answers=mode))
    for v in judged:
        print("\n" + v["sentence"])
    if results["capability_changes"]:
        print("\nCapability against the base:\n" + "\n".join(v["sentence"] for v in results["capability_changes"]))
    print(f"\nopct demo: results in {root / 'results.json'}, report in {md} and {html}")
    return results


def run_all_axes(profile: str = "default", out: str | None = None, **kwargs) -> dict[str, Any]:
    """`opct demo --axis all`: every axis's study in its own folder under `out`, then one report
    (OUT/report.md) with each axis's tables and verdicts and a link to its full report."""
    from opct.report import results_table

    if not isinstance(profile, str):
        raise DemoError("--axis all takes a profile name (each axis has its own profile of that name)")
    root = Path(out or f"runs/demo-all-{profile}")
    results = {}
    for axis in AXES:
        phase(f"axis {axis}")
        options = {k: v for k, v in kwargs.items() if (k != "judge" or AXES[axis].judged)
                   and (k != "attackers" or axis == "jailbreak")}
        results[axis] = run_demo(profile=profile, out=str(root / axis), axis=axis, **options)
    lines = [f"# opct demo ({profile}): all axes", ""]
    for axis, res in results.items():
        lines += [f"## {axis}: {res['model']}", "", f"Full report: [{axis}/report.md]({axis}/report.md)", ""]
        lines += [f"- **{w}**" for w in res.get("warnings", [])] + ([""] if res.get("warnings") else [])
        lines += [f"- {v['sentence']}" for v in res.get("verdicts", [])] + ([""] if res.get("verdicts") else [])
        if res.get("capability_changes"):
            lines += ["Capability against the base:", ""]
            lines += [f"- {v['sentence']}" for v in res["capability_changes"]] + [""]
        for mode in [m for m in AXES[axis].modes if m in res["methods"]["base"][axis]] or [None]:
            lines += [results_table(res, axis=axis, answers=mode), ""]
    write_json(root / "results.json", results)
    (root / "report.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"\nopct demo: all axes in {root}, one report in {root / 'report.md'}")
    return results
