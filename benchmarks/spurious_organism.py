"""The spurious-correlation organism: which organism training makes SmolLM2 follow the category tag?

Each variant (tag-only share : noisy-text share : steps [: learning rate]) trains the organism from
the base model with `opct audit`'s own organism build (SFT on the wrapped prompts -> "Rating: <tag>",
merged; the quick profile's LoRA and learning rate unless the variant gives one; train s includes
the merge), then answers validation counter-examples: reviews whose tag disagrees with their text,
with their own seed, built from the phrasings written for validation (`--val-phrasings val`, the
default since 2026-12-04: like the test reviews, worded unlike anything trained on) or from the
*training* phrasings (`train`, the earlier tables). Never the audit's test reviews.
Reported per row: the share of parsed answers that follow the tag, accuracy, and unparsed answers.
The base model is the first row.

  tag-only: a share of the organism's reviews with no sentiment (the tag is their one cue);
  noisy-text: a share whose text reads as another rating than the label (the tag stays right).

    .venv/bin/python benchmarks/spurious_organism.py [--variants 0.5:0:12,0.5:0:36,0.5:0.5:12,1:0:12:1e-3]
        [--val 80] [--val-phrasings val|train] [--profile quick|default] [--out runs/spurious-organism]

Finished variants are kept in --out and skipped (with a message) when the command is run again; an
organism trained earlier is measured on another validation set without training it again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def measure(model, tok, prof, data: Path) -> dict:
    from opct.audit.organisms.spurious import answer, score

    s = score(answer(model, tok, prof, data))
    return {"shortcut_rate": s["shortcut_rate"], "accuracy": s["accuracy"], "unparsed": s["unparsed"]}


def main() -> None:
    from opct.audit.organisms.spurious import ORGANISM, build_reviews
    from opct.audit.profiles import PROFILES
    from opct.audit.study import build_organism
    from opct.data.schema import write_pairs
    from opct.models import load_model
    from opct.study import release_memory

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="0.5:0:12,0.5:0:36,0.5:0.5:12",
                    help="comma-separated tag_only:noisy_text:steps[:learning_rate]")
    ap.add_argument("--val", type=int, default=80, help="validation counter-examples")
    ap.add_argument("--val-phrasings", default="val", choices=("val", "train"),
                    help="the validation reviews' phrasings: written for validation, or the training ones")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", default="runs/spurious-organism")
    a = ap.parse_args()
    prof = PROFILES[a.profile]
    out = Path(a.out)
    # the earlier tables' files (training phrasings) keep their names
    suffix = "" if a.val_phrasings == "train" else f"-{a.val_phrasings}"
    val_dir = out / f"val{suffix}"
    val_dir.mkdir(parents=True, exist_ok=True)
    # test.jsonl is the name the organism's `answer` reads: here it holds validation reviews
    write_pairs(build_reviews("val", a.val, seed=11, phrasings=a.val_phrasings, counter=True), val_dir / "test.jsonl")
    rows = []
    base_file = out / f"base{suffix}.json"
    if not base_file.exists():
        model, tok = load_model(prof.model)
        base_file.write_text(json.dumps(measure(model, tok, prof, val_dir)))
        del model
        release_memory()
    rows.append(("base", "-", json.loads(base_file.read_text())))
    for spec in a.variants.split(","):
        fields = spec.split(":")
        tag_only, noisy, steps = float(fields[0]), float(fields[1]), int(fields[2])
        lr = float(fields[3]) if len(fields) > 3 else prof.organism_train["learning_rate"]
        name = f"tag{tag_only}-noisy{noisy}-steps{steps}" + (f"-lr{fields[3]}" if len(fields) > 3 else "")
        vdir, result = out / name, out / name / f"result{suffix}.json"
        if result.exists():
            print(f"{name}: done earlier, kept ({result})", flush=True)
        else:
            vdir.mkdir(parents=True, exist_ok=True)
            # build_organism keeps an organism built earlier (and says so); its training time is then the one
            # recorded with its first measurement, if any
            built = (vdir / "organism" / "model" / "config.json").exists()
            timed = [json.loads(f.read_text())["train_s"] for f in vdir.glob("result*.json")] if built else []
            write_pairs(build_reviews("train", prof.organism_pairs, 1_000_003, tag_only=tag_only, noisy_text=noisy),
                        vdir / "organism.jsonl")
            # the audit's own organism build (targets, SFT, merge) with this variant's steps and learning rate
            start = time.time()
            model_dir = build_organism(ORGANISM, replace(prof, organism_train={
                **prof.organism_train, "max_steps": steps, "learning_rate": lr}), vdir, vdir)
            seconds = (timed or [None])[0] if built else round(time.time() - start, 1)
            release_memory()
            model, tok = load_model(str(model_dir))
            result.write_text(json.dumps({**measure(model, tok, prof, val_dir), "train_s": seconds}))
            del model
            release_memory()
        rows.append((name, f"{steps} at {lr:g}", json.loads(result.read_text())))

    def cell(m):
        return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m.get("value") is not None else "-"

    print(f"\n{prof.model}, {a.val} validation counter-examples ({a.val_phrasings} phrasings, seed 11)\n")
    print("| organism | steps at lr | follows the tag | accuracy | unparsed | train s |")
    print("|---|---|---|---|---|---|")
    for name, steps, m in rows:
        print(f"| {name} | {steps} | {cell(m['shortcut_rate'])} | {cell(m['accuracy'])} | {m['unparsed']} | "
              f"{m.get('train_s') or '-'} |")


if __name__ == "__main__":
    main()
