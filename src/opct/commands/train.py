"""`opct train`: one method on a pair file, from flags, --set and a TOML config."""

from __future__ import annotations

import dataclasses
import json

from opct.errors import UsageError
from opct.embedded import EMBEDDED

EPILOG_MODELS = (
    "model specs: " + ", ".join(f"embedded:{name} = {m.description}" for name, m in EMBEDDED.items())
    + "; a local HF model or adapter folder, an opct run directory, or a hub id (org/name)."
)


def parse_value(text: str):
    """A --set value: JSON when it parses (numbers, booleans, lists), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with OPCT, SFT/BCT, ACT or self-training on a pair file",
        description="Train a LoRA adapter on contrastive pairs. Checkpoints go to OUT/checkpoint-<step>, the log to "
        "OUT/log.jsonl, the effective config to OUT/opct_config.json and the final adapter to OUT/final "
        "(usable as --model OUT anywhere).",
        epilog=EPILOG_MODELS + " Any config field (see --help-config) can be set in --config FILE.toml "
        "(top-level keys, or a [opct]/[sft]/[act]/[selftrain] table) or with --set key=value; flags override the file.",
    )
    p.add_argument("method", choices=["opct", "sft", "act", "selftrain"],
                   help="opct: on-policy reverse KL; sft: BCT; act: activation L2; selftrain: fine-tune on the model's "
                   "own selected answers (--set selector=greedy|self_certainty|diverse|multi_view|self_refine|"
                   "self_reward|dual_decoding|oracle)")
    p.add_argument("--model", default="embedded:qwen2.5-0.5b-instruct", help="model spec (default: %(default)s)")
    p.add_argument("--pairs", help="JSONL file of contrastive pairs (see `opct data`)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--config", help="TOML file of config fields")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides epochs)")
    p.add_argument("--epochs", type=float, help="passes over the pairs")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int, help="pairs per micro-batch")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field, repeatable")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--help-config", action="store_true", help="list every config field of METHOD with its help and exit")
    p.set_defaults(func=cmd_train)


def config_help(method: str) -> str:
    from opct.trainers.run import config_class

    cls, _ = config_class(method)
    lines = [f"config fields of `opct train {method}` ({cls.__name__}):"]
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else "(computed)"
        text = (f.metadata or {}).get("help", "").split("\n")[0][:110]
        lines.append(f"  {f.name} = {default!r}  {text}")
    return "\n".join(lines)


def cmd_train(a) -> int:
    from opct.trainers.run import load_config_file, train

    if a.help_config:
        print(config_help(a.method))
        return 0
    if not a.pairs or not a.out:
        raise UsageError("opct train needs --pairs FILE and --out DIR")
    overrides = load_config_file(a.config, a.method) if a.config else {}
    flags = {"max_steps": a.max_steps, "num_train_epochs": a.epochs, "save_steps": a.save_steps, "learning_rate": a.lr,
             "per_device_train_batch_size": a.batch_size, "gradient_accumulation_steps": a.grad_accum, "seed": a.seed}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    for item in a.set:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k.strip()] = parse_value(v)
    summary = train(a.method, a.model, a.pairs, a.out, overrides, resume=a.resume)
    last = summary["last_log"]
    from opct.losses import DIVERGENCE_STATS

    extra = "".join(f", {k} {last[k]:.4g}" for k in DIVERGENCE_STATS if k in last)
    setup = f" ({summary['setup_seconds']:.0f}s of it building the trainer)" if summary["setup_seconds"] >= 1 else ""
    print(f"opct train {a.method}: {summary['steps']} steps in {summary['seconds']:.0f}s{setup}, "
          f"train loss {summary['train_loss']:.4g}{extra}; adapter at {summary['final']}")
    return 0
