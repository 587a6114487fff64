"""What the consistency trainers share: LoRA options, model preparation, and a `Trainer`
subclass that prepares each gradient-accumulation window before its first backward pass.

Preparing the whole window first (sampling rollouts for OPCT, tokenising for ACT) gives the
exact number of loss tokens across all its micro-batches, so the loss is normalised per token
over the window, never per micro-batch.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from opct.precision import bf16_is_fast


@dataclass
class LoRAArguments:
    """LoRA options shared by every opct config."""

    use_lora: bool = field(default=True, metadata={"help": "Train a LoRA adapter (the frozen base is then the teacher)."})
    lora_r: int = field(default=32, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "Modules to adapt: 'all-linear' or comma-separated names."}
    )
    base_dtype: str = field(
        default="auto",
        metadata={"help": "dtype of the frozen base weights under LoRA: auto (bfloat16 when bf16 autocast is on, "
                  "else float32), bfloat16 or float32. The adapter always trains in float32."},
    )

    def frozen_dtype(self) -> torch.dtype:
        if self.base_dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"base_dtype must be auto, bfloat16 or float32, got {self.base_dtype!r}")
        if self.base_dtype == "auto":
            return torch.bfloat16 if self.use_lora and getattr(self, "bf16", False) else torch.float32
        return getattr(torch, self.base_dtype)

    def lora_targets(self) -> str | list[str]:
        t = self.lora_target_modules
        return t if t == "all-linear" else [s.strip() for s in t.split(",") if s.strip()]


def resolve_bf16(args) -> None:
    """bf16 autocast only where bf16 is native on the training device (`opct.precision`), fp32
    elsewhere. It works on a CPU too, but `TrainingArguments` accepts it there only with use_cpu."""
    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if args.bf16 and not bf16_is_fast(device):
        args.bf16 = False
    if args.bf16 and device == "cpu":
        args.use_cpu = True


@dataclass
class ConsistencyArguments(LoRAArguments, TrainingArguments):
    """TrainingArguments with opct's defaults for small CPU runs."""

    output_dir: str = field(default="runs/opct", metadata={"help": "Run directory (checkpoints, logs, final adapter)."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Pairs per micro-batch."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs."})
    lr_scheduler_type: str = field(default="constant_with_warmup", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=0, metadata={"help": "Warm-up steps."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})
    save_steps: float = field(default=50, metadata={"help": "Checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast over fp32 weights (pure bf16 barely learns); "
                      "off where bf16 is not native (opct.precision)."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Loggers: none, tensorboard, wandb, ..."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the pair columns (needed)."})
    max_prompt_length: int = field(default=1024, metadata={"help": "Prompts longer than this (tokens) are cut on the left."})

    def __post_init__(self):
        resolve_bf16(self)
        super().__post_init__()


def prepare_model(model, args: ConsistencyArguments):
    """(model, tokenizer) ready to train: a spec string is loaded, a LoRA adapter added if asked."""
    from opct.heap import return_large_frees
    from opct.models import add_lora, fast_layers, load_model

    return_large_frees()
    tokenizer = None
    if isinstance(model, str):
        model, tokenizer = load_model(model)
    if args.use_lora and not hasattr(model, "disable_adapter"):
        from transformers import set_seed

        set_seed(args.seed)  # the adapter's random init is part of the run's reproducibility
        model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_targets())
    if hasattr(model, "disable_adapter") and args.frozen_dtype() != torch.float32:
        if not getattr(args, "bf16", False):
            raise ValueError("base_dtype=bfloat16 needs bf16 autocast (bf16=True; off where bf16 is not native, "
                             "unless OPCT_BF16=1): without it the fp32 adapter and the bf16 base cannot be mixed")
        cast_frozen(model, args.frozen_dtype())
        # Under autocast LoRA's fp32 factors are cast to bf16 anyway; peft's cast of every input to
        # their dtype is then a copy there and back that changes no value (10% of a SmolLM2 step).
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    return fast_layers(model), tokenizer


def fresh_adapter(model) -> bool:
    """Whether `model` is a peft model whose LoRA adapter adds exactly zero (every B factor is zero,
    as peft's default init leaves it): the model then computes what its base does."""
    b_factors = [p for name, p in model.named_parameters() if "lora_B" in name or "lora_embedding_B" in name]
    return bool(b_factors) and hasattr(model, "disable_adapter") and all(p.count_nonzero() == 0 for p in b_factors)


@contextmanager
def initial_model(model):
    """Run the model as it was before training, for labels made up front (SFT targets, self-training
    candidates). A LoRA adapter fresh from peft's default init adds exactly zero (its B factors are
    zero), so it is disabled for the call: the same tokens and scores without its matmuls (sampling
    SmolLM2's labels 20% faster, 2026-12-05). An adapter that already holds weights stays on."""
    if not fresh_adapter(model):
        yield
        return
    with model.disable_adapter():
        yield


def cast_frozen(model, dtype: torch.dtype) -> None:
    """Store the frozen (base) weights in `dtype`; trainable ones stay as they are (fp32).

    Under bf16 autocast every matmul reads its weights in bf16 anyway, so a bf16 frozen base
    computes what the fp32 one did (up to the rounding of norms and embeddings) while halving the
    model's memory and skipping the per-call weight casts. Tied weights stay tied."""
    for p in model.parameters():
        if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


def keep_bf16_outputs(model) -> None:
    """Drop the fp32 cast accelerate puts around a bf16-autocast forward, keep the autocast.

    accelerate wraps `model.forward` as cast_to_fp32(autocast(forward)): every floating output,
    the [B, T, V] logits included, is copied to fp32; twice per OPCT step and once more in the
    backward (measured 5% of a Qwen 0.5B step). opct's losses upcast chunk by chunk themselves.
    The autocast stays on the model, as before, for code that calls it after training. Does
    nothing when the wrapper is absent or not laid out as expected."""
    from types import MethodType

    from accelerate.utils.operations import ConvertOutputsToFp32

    forward = model.__dict__.get("forward")
    inner = getattr(getattr(forward, "__func__", forward), "__wrapped__", None)
    if isinstance(inner, ConvertOutputsToFp32):
        model.forward = MethodType(inner.model_forward, model) if hasattr(forward, "__func__") else inner.model_forward


def cut_left(ids: list[int], limit: int) -> list[int]:
    return ids[-limit:] if len(ids) > limit else ids


class JsonlLogCallback(TrainerCallback):
    """Appends every log record to OUT/log.jsonl (readable without tensorboard)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            path = Path(args.output_dir) / "log.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class LearningCurveCallback(TrainerCallback):
    """Every `every` optimizer steps, at step 0 and at the last step (with `early`, also at steps 1,
    2, 4, ... below `every`, where methods part ways), `measure(model)` returns {metric: value}; each
    point is appended to OUT/curve.jsonl as {"step", "seconds", **metrics}. `start(model)`, when
    given, measures the step-0 point instead. "seconds" is the method's time (the measurements are
    left out), continued across a resume; a fresh run starts at `setup_seconds`, the time its trainer
    took to build (`opct.trainers.run.train` sets it: SFT's targets, self-training's labels).
    `measuring` is the time the points took, which the run's summary reports as `curve_seconds`."""

    def __init__(self, measure, every: int, early: bool = False, start=None):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.measure, self.every, self.early, self.start_measure = measure, every, early, start or measure
        self.setup_seconds = 0.0
        self.measuring = 0.0  # seconds spent measuring points in this invocation

    def due(self, step: int, max_steps: int) -> bool:
        """Whether step `step` (>= 1) of `max_steps` gets a point."""
        doubling = self.early and step < self.every and step & (step - 1) == 0
        return step % self.every == 0 or doubling or step >= max_steps

    def _path(self, args) -> Path:
        return Path(args.output_dir) / "curve.jsonl"

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        points = [json.loads(x) for x in self._path(args).read_text().splitlines()] if self._path(args).exists() else []
        points = [p for p in points if p["step"] <= state.global_step]  # a resume drops points past its checkpoint
        self._path(args).parent.mkdir(parents=True, exist_ok=True)
        self._path(args).write_text("".join(json.dumps(p) + "\n" for p in points))
        self.offset = points[-1]["seconds"] if points else self.setup_seconds
        self.start, self.measuring = time.perf_counter(), 0.0
        if not points and state.global_step == 0:
            self._point(args, state, model, self.start_measure)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.due(state.global_step, state.max_steps):
            self._point(args, state, model, self.measure)

    def _point(self, args, state, model, measure) -> None:
        began = time.perf_counter()
        seconds = self.offset + began - self.start - self.measuring
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                metrics = measure(model)
        finally:
            model.train(training)
        self.measuring += time.perf_counter() - began
        if state.is_world_process_zero:
            with self._path(args).open("a") as f:
                f.write(json.dumps({"step": state.global_step, "seconds": round(seconds, 2), **metrics}) + "\n")


def collate_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rows": rows}


class WindowTrainer(Trainer):
    """A `Trainer` whose micro-batches are raw pair rows, turned into tensors by `prepare_batch`
    for a whole accumulation window at once; `compute_loss` gets the window's item count."""

    loss_is_scaled_for_ga = True  # our losses divide by the window's token count themselves

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("data_collator", collate_rows)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        super().__init__(*args, callbacks=[JsonlLogCallback(), *callbacks], **kwargs)
        self._metrics: dict[str, list[float]] = {}

    def training_step(self, model, inputs, num_items_in_batch=None):
        keep_bf16_outputs(model)
        return super().training_step(model, inputs, num_items_in_batch)

    def prepare_batch(self, rows: list[dict[str, Any]], micro_index: int) -> dict[str, Any]:
        """Tensors for one micro-batch; must include 'num_items' (the loss-token count)."""
        raise NotImplementedError

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        raw, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        batches = [self.prepare_batch(b["rows"], i) for i, b in enumerate(raw)]
        total = torch.tensor(float(sum(b["num_items"] for b in batches)), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total).sum()
        return batches, total.clamp(min=1.0)

    def loss_scale(self) -> float:
        # DDP averages gradients over processes; our loss is already divided by the global count.
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            return float(self.args.world_size)
        return 1.0

    def record(self, **values: float) -> None:
        for k, v in values.items():
            self._metrics.setdefault(k, []).append(float(v))

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self._metrics and "loss" in logs:
            for k, vs in self._metrics.items():
                logs[k] = round(sum(vs) / len(vs), 6)
            self._metrics = {}
        super().log(logs, *args, **kwargs)


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)
