"""One training run from a method name, a model spec and a pair file: what `opct train` and
`opct demo` call. Writes the effective config, checkpoints (`OUT/checkpoint-<step>`), a JSONL
log and the final adapter (`OUT/final`), and resumes from the last checkpoint when asked."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import tomllib
from pathlib import Path
from typing import Any

from opct.data.schema import pairs_to_dataset, read_pairs
from opct.errors import UserError


class ConfigError(UserError):
    """A bad config file or override; the message names the file and key."""


def config_class(method: str):
    from opct.trainers import TRAINERS

    if method not in TRAINERS:
        raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(TRAINERS)}")
    return TRAINERS[method]


def load_config_file(path: str | Path, method: str) -> dict[str, Any]:
    """Keys of a TOML file for one method: top-level keys, plus a [METHOD] table that overrides them."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    from opct.trainers import TRAINERS

    flat = {k: v for k, v in data.items() if not (isinstance(v, dict) and k in TRAINERS)}
    flat.update(data.get(method, {}))
    known = {f.name for f in dataclasses.fields(config_class(method)[0])}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) for method {method!r}: {', '.join(unknown)} (see `opct train {method} --help-config`)")
    return flat


def build_config(method: str, out: str, overrides: dict[str, Any]):
    cls, _ = config_class(method)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown option {key!r} for method {method!r}")
        kwargs[key] = value
    kwargs["output_dir"] = out
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {method} config: {e}") from None


def has_checkpoint(out: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out)) if Path(out).is_dir() else None


def checkpoint_step(checkpoint: str | Path) -> int | None:
    """The optimizer step a checkpoint was saved at (its trainer_state.json), or None."""
    try:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError):
        return None


def train(method: str, model: str, pairs_path: str, out: str, overrides: dict[str, Any] | None = None,
          resume: bool = False, callbacks=None, trainer_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and return a summary dict (also written to OUT/summary.json). `trainer_kwargs` go to the
    trainer itself (what no config file can hold, e.g. the self-training oracle's reward function)."""
    from opct.models import load_model
    from opct.trainers.base import LearningCurveCallback

    _, trainer_cls = config_class(method)
    pairs = read_pairs(pairs_path)
    args = build_config(method, out, overrides or {})
    last = has_checkpoint(out)
    if last and not resume:
        raise ConfigError(f"{out} already holds checkpoints ({Path(last).name}); pass --resume to continue it, "
                          "or choose another --out")
    if resume and not last:
        print(f"opct: no checkpoint in {out}; starting from scratch", flush=True)
    if resume and last:
        print(f"opct: resuming {out} from {last} (step {checkpoint_step(last)})", flush=True)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, rank 0 writes
    Path(out).mkdir(parents=True, exist_ok=True)
    effective = {"method": method, "model": model, "pairs": str(pairs_path), "n_pairs": len(pairs),
                 "config": json.loads(args.to_json_string())}
    if main_process:
        (Path(out) / "opct_config.json").write_text(json.dumps(effective, indent=2))

    base, tokenizer = load_model(model)
    # Building the trainer is part of a method's cost: BCT generates its targets there and self-training
    # draws its candidates, where OPCT samples inside the loop. So "seconds" counts from here.
    start = time.time()
    trainer = trainer_cls(base, args, pairs_to_dataset(pairs), processing_class=tokenizer, callbacks=callbacks,
                          **(trainer_kwargs or {}))
    setup_seconds = time.time() - start
    for callback in callbacks or []:
        if isinstance(callback, LearningCurveCallback):  # its curve starts when the method's first step could
            callback.setup_seconds = setup_seconds
    result = trainer.train(resume_from_checkpoint=last if resume and last else None)
    final = Path(out) / "final"
    trainer.save_model(str(final))  # rank 0 only, by the Trainer
    logs = [h for h in trainer.state.log_history if "loss" in h]
    curve_seconds = sum(c.measuring for c in callbacks or [] if isinstance(c, LearningCurveCallback))
    summary = {
        "method": method, "model": model, "steps": trainer.state.global_step, "seconds": round(time.time() - start, 1),
        "setup_seconds": round(setup_seconds, 1),  # of "seconds": building the trainer (targets, draws)
        "curve_seconds": round(curve_seconds, 1),  # of "seconds": measuring learning-curve points, not the method
        "train_loss": result.training_loss, "final": str(final),
        "last_log": logs[-1] if logs else {},
    }
    if getattr(trainer, "target_report", None):
        summary["targets"] = trainer.target_report
    if main_process:
        tokenizer.save_pretrained(str(final))
        (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
