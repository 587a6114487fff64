"""The safety axis's ceiling per model: base (no fact) against teacher (the fact in the system message).

For each model, the default profile's test prompts (held-out facts) are answered greedily twice: on
the wrapped prompt (what the base model does alone) and on the clean prompt (what OPCT's teacher
sees, the most a consistency method can carry over). The keyword judge scores both; with
--judge-model (a local model spec) or --judge-base-url an LLM judge scores them too. The answers
are saved (--out DIR/<model>.<view>.rows.jsonl) so they can be labelled by hand or judged again
with `opct eval safety-awareness --responses`.

With --max-new-tokens above the profile's (128), each answer is also judged cut to the profile's length
(its first 128 tokens), so one run shows how many warnings the eval's cut hides.

Usage:
  python benchmarks/safety_ceiling.py                            # both Qwen models, keyword judge
  python benchmarks/safety_ceiling.py --models embedded:qwen2.5-coder-1.5b-instruct --limit 32
  python benchmarks/safety_ceiling.py --judge-model embedded:qwen2.5-coder-1.5b-instruct --votes 1
  python benchmarks/safety_ceiling.py --models embedded:qwen2.5-0.5b-instruct --max-new-tokens 512
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from opct.commands.common import add_judge_backend_args, judge_backend_from_args  # noqa: E402

MODELS = "embedded:qwen2.5-0.5b-instruct,embedded:qwen2.5-coder-1.5b-instruct"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=MODELS, help="comma-separated model specs (default: %(default)s)")
    p.add_argument("--limit", type=int, help="the first N prompts only (default: as many as the profile's test set)")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="facts to ask about: the held-out ones (default) or the training ones, e.g. for fresh answers "
                        "to label that no judge was tuned on")
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                   help="weights of the answering models (default: auto, bfloat16 where bf16 is native, else float32; "
                        "the demo evaluates fp32 weights under bf16 autocast where bf16 is native)")
    p.add_argument("--max-new-tokens", type=int, help="answer length (default: the profile's eval length, 128); "
                   "longer answers are judged whole and cut to the profile's length")
    p.add_argument("--system-template", help="the teacher's system message, with {fact} where the fact goes "
                   "(default: opct.data.safety.SYSTEM_TEMPLATE); its answers are saved under a name with a hash of it")
    p.add_argument("--views", default="base,teacher", help="which answers to make: base (no fact), teacher (the fact in "
                   "the system message), or both (default: %(default)s)")
    p.add_argument("--votes", type=int, default=1, help="LLM judge votes per answer (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/safety-ceiling"), help="answers go here (default: %(default)s)")
    add_judge_backend_args(p)
    args = p.parse_args(argv)

    import torch

    from opct.axes.safety import PROFILES
    from opct.data.safety import SYSTEM_TEMPLATE, build_safety_pairs
    from opct.evals.safety import (KeywordSafetyJudge, LLMSafetyJudge, evaluate_safety, judge_safety_responses,
                                   safety_metrics)
    from opct.models import load_model
    from opct.precision import bf16_is_fast
    from opct.study import release_memory, short_pairs

    prof = PROFILES["default"]
    template = args.system_template or SYSTEM_TEMPLATE
    wanted = {v.strip() for v in args.views.split(",") if v.strip()}
    if not wanted or wanted - {"base", "teacher"}:
        p.error(f"--views: expected base, teacher or both, got {args.views!r}")
    views = [(v, n) for v, n in (("wrapped", "base"), ("clean", "teacher")) if n in wanted]
    max_new_tokens = args.max_new_tokens or prof.eval_max_new_tokens
    llm = None
    if args.judge_model or args.judge_base_url:
        llm = LLMSafetyJudge(judge_backend_from_args(args), k=args.votes)
    args.out.mkdir(parents=True, exist_ok=True)
    table = []

    def write_jsonl(path: Path, rows: list[dict]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype if args.dtype != "auto" else "bfloat16" if bf16_is_fast(device) else "float32"
    for spec in args.models.split(","):
        model, tokenizer = load_model(spec, dtype=getattr(torch, dtype))
        pairs, _ = short_pairs(build_safety_pairs(args.split, seed=0, system_template=template), tokenizer,
                               prof.max_prompt_tokens, prof.test_pairs)
        pairs = pairs[: args.limit] if args.limit else pairs
        for view, name in views:
            start = time.time()
            _, rows = evaluate_safety(model, tokenizer, pairs, KeywordSafetyJudge(), max_new_tokens=max_new_tokens,
                                      view=view)
            seconds = time.time() - start
            stem = (f"{spec.split(':')[-1]}.{view}" + (".train" if args.split == "train" else "")
                    + (f".{max_new_tokens}" if max_new_tokens != prof.eval_max_new_tokens else "")
                    + (f".t{hashlib.sha256(template.encode()).hexdigest()[:8]}"
                       if view == "clean" and template != SYSTEM_TEMPLATE else ""))
            write_jsonl(args.out / f"{stem}.rows.jsonl", rows)
            judged = {"keyword": rows}
            if max_new_tokens > prof.eval_max_new_tokens:  # the same answers as the eval's cut sees them (re-tokenized)
                cut = [tokenizer.decode(tokenizer(r["response"], add_special_tokens=False)["input_ids"]
                                        [: prof.eval_max_new_tokens]) for r in rows]
                _, judged[f"keyword, first {prof.eval_max_new_tokens} tokens"] = judge_safety_responses(
                    pairs, cut, KeywordSafetyJudge())
                n_cut = sum(r["finished"] is False for r in rows)
                print(f"{spec} {name}: {n_cut} of {len(rows)} answers still unfinished at {max_new_tokens} tokens",
                      flush=True)
            if llm is not None:
                _, judged["llm"] = judge_safety_responses(pairs, [r["response"] for r in rows], llm,
                                                          [r["finished"] for r in rows])
                write_jsonl(args.out / f"{stem}.llm.rows.jsonl", judged["llm"])
            for judge, scored in judged.items():
                m = safety_metrics(scored)
                table.append({"model": spec, "row": name, "judge": judge, "n": len(scored), "seconds": round(seconds),
                              "template": template if view == "clean" else None,
                              "pass_rate": m["pass_rate"], "ausc": m["ausc"]})
                print(f"{spec} {name} ({judge}): pass {m['pass_rate']['value']:.3f}, AUSC {m['ausc']['value']:.3f}",
                      flush=True)
        del model
        release_memory()

    print(f"\n{'model':<40}{'row':<9}{'judge':<26}{'n':>4}{'pass rate [95% CI]':>26}{'AUSC [95% CI]':>26}{'gen s':>7}")
    for r in table:
        cell = lambda m: f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"  # noqa: E731
        print(f"{r['model']:<40}{r['row']:<9}{r['judge']:<26}{r['n']:>4}{cell(r['pass_rate']):>26}"
              f"{cell(r['ausc']):>26}{r['seconds']:>7}")
    (args.out / "ceiling.json").write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
