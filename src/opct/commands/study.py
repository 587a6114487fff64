"""`opct demo` and `opct audit`: the studies, from flags to `opct.demo` / `opct.audit`."""

from __future__ import annotations

from opct.errors import UsageError


def add_demo(sub) -> None:
    from opct.axes import AXES

    p = sub.add_parser(
        "demo",
        help="a study on one axis: base vs SFT/BCT vs OPCT vs ACT, with a report",
        description="Builds train/test pairs for the axis, evaluates the base model, trains SFT (BCT), OPCT and ACT "
        "from the same base on the same prompts, evaluates each (the axis + a capability panel: held-out MMLU, "
        "over-refusal on benign look-alike prompts, KL drift from the base), and writes DIR/results.json, "
        "DIR/report.md and DIR/report.html. Axes: sycophancy (MMLU and everyday questions the base model answers "
        "right, with a user's wrong suggestion), jailbreak "
        "(held-out behaviours under held-out wrappers and an adaptive wrapper-search attacker), safety (warning "
        "about hazards nobody mentioned). Each training run's learning curve (the axis's metric on validation items "
        "never tested on, and the KL drift from the base, at steps 1, 2, 4, ... then every few steps) is plotted "
        "and tabled in the report. With --seeds N every method is trained N times and the report says, per "
        "verdict metric, whether OPCT beats SFT (yes / no / tied / unclear) from a paired comparison over items and seeds. "
        "Finished phases are kept: after Ctrl-C or a kill, rerun with --resume (more seeds may be added then).",
        epilog="profiles: " + "; ".join(f"{name}/{k}: {v.describe()}" for name, ax in AXES.items()
                                        for k, v in ax.profiles.items()),
    )
    p.add_argument("--axis", choices=[*AXES, "all"],
                   help="which safety axis the study is about (default: sycophancy; with --resume, the run's); "
                   "all: the three, each in OUT/AXIS, with one report")
    p.add_argument("--profile", choices=sorted({k for ax in AXES.values() for k in ax.profiles}),
                   help="default (the default; with --resume, the run's): Qwen-Coder 1.5B for sycophancy, 0.5B for "
                   "the other axes (tens of minutes on a laptop CPU); quick: SmolLM2 (minutes; it answers "
                   "multiple-choice questions at chance, so its sycophancy run checks the pipeline only)")
    p.add_argument("--out", help="run directory (default: runs/demo-PROFILE, or runs/demo-AXIS-PROFILE)")
    p.add_argument("--model", help="override the profile's model spec")
    p.add_argument("--methods", help="comma-separated subset of sft,opct,act (default: all; with --resume, the run's)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run in --out, keeping finished phases (its saved answers are scored afresh, so a "
                   "finished run is re-reported with the current metrics)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data (questions, wrappers, suggested options)")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds per method (42, 43, ...); tables pool them, verdicts pair over items and seeds "
                        "(default 1; with --resume, as many as the run has)")
    p.add_argument("--judge", metavar="keyword|SPEC|URL",
                   help="safety axis: the judge of the answers: keyword (offline, the default; unreliable on trained "
                   "models' answers, precision 0.32 and recall 0.53 against hand labels: see README 'Judges' and "
                   "benchmarks/safety_hand_labels.py), a local model spec (one greedy vote), or an OpenAI-compatible "
                   "endpoint URL")
    p.add_argument("--attackers", metavar="none|LIST",
                   help="jailbreak axis: which of the profile's extra attackers run on every model (random_suffix, "
                   "gcg, rl; see the profiles below), e.g. random_suffix,gcg; none: the wrapper search only. They "
                   "cost time: on the quick profile they took 3.3-3.7 min per evaluated model, 14 min over its four "
                   "(idle 2-core CPU, 2026-12-03)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="change one training option of the profile, repeatable; METHOD is sft, opct, act or all, "
                   "KEY any field of that method's config (`opct train METHOD --help-config`), VALUE JSON or text: "
                   "e.g. --set all.max_steps=32 --set opct.num_samples=4. Recorded in DIR/demo_config.json, so "
                   "--resume refuses other values")
    p.set_defaults(func=cmd_demo)


def train_changes(items: list[str]) -> list[tuple[str, str, object]]:
    """--set METHOD.KEY=VALUE items as (method, key, value), in order."""
    from opct.commands.train import parse_value

    out = []
    for item in items:
        target, sep, value = item.partition("=")
        method, dot, key = target.strip().partition(".")
        if not (sep and dot and method and key):
            raise UsageError(f"--set {item!r}: expected METHOD.KEY=VALUE, e.g. opct.max_steps=32")
        out.append((method, key, parse_value(value)))
    return out


def fill_from_run(a, config: str, parts, part_flag: str, defaults: dict[str, str]) -> None:
    """On --resume, the flags among `defaults` that were left out take the run's own values, and say so;
    otherwise (or without a run) their defaults."""
    from opct.study import recorded_settings

    taken = {}
    if a.resume:
        before, whole = recorded_settings(a.out, config, parts)
        for flag in defaults:
            if getattr(a, flag) is None and flag in before:
                taken[flag] = "all" if whole and flag == part_flag else before[flag]
                setattr(a, flag, taken[flag])
    if taken:
        print("opct: --resume keeps the run's " + ", ".join(f"--{k} {v}" for k, v in taken.items()), flush=True)
    for flag, value in defaults.items():
        if getattr(a, flag) is None:
            setattr(a, flag, value)


def cmd_demo(a) -> int:
    from opct.axes import AXES
    from opct.demo import run_all_axes, run_demo

    fill_from_run(a, "demo_config.json", AXES, "axis", {"axis": "sycophancy", "profile": "default"})
    run = run_all_axes if a.axis == "all" else run_demo
    extra = {} if a.axis == "all" else {"axis": a.axis}
    run(profile=a.profile, out=a.out, model=a.model, methods=a.methods, resume=a.resume, seed=a.seed, seeds=a.seeds,
        judge=a.judge, attackers=a.attackers, train_changes=train_changes(a.set), **extra)
    return 0


def add_audit(sub) -> None:
    from opct.audit.profiles import OPTIONAL_METHODS
    from opct.audit.study import AUDIT_METHODS, KIND_NOTES, ORGANISMS, PROFILES

    p = sub.add_parser(
        "audit",
        help="does consistency training amplify or suppress a misalignment? (model organisms)",
        description="Fine-tunes the model into a model organism of one misalignment (--organism: "
        + "; ".join(f"{name}: {o.taught}" for name, o in ORGANISMS.items())
        + "), then consistency-trains the organism with each method on disjoint prompts "
        "and measures the misalignment again. Each method's change from the organism is a paired difference over "
        "the same test items with a 95% CI (bootstrap, at least Newcombe's paired interval for rates): amplified or "
        "suppressed when it excludes 0 and the paired sign-flip test agrees (p < 0.05), else no clear change. Writes "
        "DIR/results.json, DIR/report.md, DIR/report.html and DIR/audit_effects.png. Finished phases are kept: "
        "after Ctrl-C or a kill, rerun with --resume.",
        epilog="methods: " + "; ".join(f"{k} ({v[0]})" for k, v in AUDIT_METHODS.items()) + ". "
        + " ".join(f"{kind}: {text}" for kind, text in KIND_NOTES.items())
        + " profiles: " + "; ".join(f"{k}: {v.describe()}" for k, v in PROFILES.items()),
    )
    p.add_argument("--organism", choices=[*ORGANISMS, "all"],
                   help="the misalignment to build and audit (default: sycophancy; with --resume, the run's); all: "
                   "every organism, each in OUT/ORGANISM, with a method x organism heatmap of the effects against "
                   "the greedy control")
    p.add_argument("--profile", choices=sorted(PROFILES),
                   help="default (the default; with --resume, the run's): Qwen 0.5B organisms, and sycophancy on Qwen-Coder 1.5B as it is (each organism "
                   "19-121 min on a 2-core CPU, so --organism all takes several hours; README, 2026-12-04); quick: "
                   "SmolLM2 made into each organism first (7-14 min per organism, 42 min for all four on a slow 2-core CPU; "
                   "README, 2026-12-05)")
    p.add_argument("--out", help="run directory (default: runs/audit-ORGANISM-PROFILE)")
    p.add_argument("--model", help="override the profile's model spec")
    p.add_argument("--methods", help=f"comma-separated subset of {','.join(AUDIT_METHODS)} (default: all but "
                   f"{','.join(OPTIONAL_METHODS)}; with --resume, the audit's)")
    p.add_argument("--resume", action="store_true",
                   help="continue an audit in --out, keeping finished phases (its saved answers are scored afresh, so a "
                   "finished audit is re-reported with the current metrics)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data (questions, suggested options)")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds per method (42, 43, ...); effects pair over items and seeds "
                        "(default 1; with --resume, as many as the run has)")
    p.add_argument("--judge", default="offline", metavar="offline|URL|SPEC",
                   help="alignment judge of the emergent-misalignment organism: offline (sentence embeddings, "
                   "checked against 154 hand labels: precision 0.77, recall 0.66), an OpenAI-compatible endpoint "
                   "URL, or a local model spec (default: %(default)s)")
    p.add_argument("--data", metavar="DIR",
                   help="audit on imported splits instead of opct's own: DIR/organism.jsonl (prompts with the "
                   "misaligned answer as target), consistency.jsonl and test.jsonl, as `opct data import aisi` "
                   "writes them (organisms that read plain prompts only: emergent_misalignment); the profile's "
                   "sizes take a seeded sample of each")
    p.set_defaults(func=cmd_audit)


def cmd_audit(a) -> int:
    from opct.audit import run_audit

    from opct.audit.study import ORGANISMS, run_all_organisms

    fill_from_run(a, "audit_config.json", ORGANISMS, "organism", {"organism": "sycophancy", "profile": "default"})
    options = dict(profile=a.profile, out=a.out, model=a.model, methods=a.methods, resume=a.resume, seed=a.seed,
                   seeds=a.seeds, judge=a.judge)
    if a.organism == "all":
        if a.data:
            raise UsageError("--data holds one organism's splits; name it with --organism")
        run_all_organisms(**options)
    else:
        run_audit(organism=a.organism, data_dir=a.data, **options)
    return 0
