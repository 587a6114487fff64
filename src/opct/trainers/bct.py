"""SFT / BCT (bias-augmented consistency training), the offline baseline, on TRL's `SFTTrainer`.

The model's own answers to the clean prompts are generated once (cached as JSONL in the run
directory and reused), then the model is fine-tuned with completion-only cross-entropy to give
those answers to the wrapped prompts.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from trl import SFTConfig, SFTTrainer

from opct.data.schema import dataset_to_pairs
from opct.defaults import DECODE_BATCH
from opct.trainers.base import JsonlLogCallback, LoRAArguments, initial_model, prepare_model, resolve_bf16


@dataclass
class BCTConfig(LoRAArguments, SFTConfig):
    """Configuration of `BCTTrainer`: TRL's `SFTConfig` plus target generation and LoRA options."""

    output_dir: str = field(default="runs/sft", metadata={"help": "Run directory."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (reference: 5e-5 jailbreaks, 1e-5 safety)."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Pairs per micro-batch."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs."})
    lr_scheduler_type: str = field(default="constant_with_warmup", metadata={"help": "Learning-rate schedule."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})
    save_steps: float = field(default=50, metadata={"help": "Checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast over fp32 weights, where bf16 is native "
                      "(opct.precision)."})
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward to save memory (TRL's default is on). Off, as in "
                  "opct's other trainers: an SFT step on SmolLM2 measured 15-20% faster (2026-12-04)."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Loggers: none, tensorboard, wandb, ..."})
    completion_only_loss: bool | None = field(default=True, metadata={"help": "Loss on the answer tokens only."})
    max_length: int | None = field(default=1024, metadata={"help": "Longest prompt + answer (tokens)."})
    target_max_new_tokens: int = field(default=128, metadata={"help": "Longest generated clean answer (target)."})
    target_temperature: float = field(default=0.0, metadata={"help": "Temperature for the clean-prompt answers (0 = greedy)."})
    target_batch_size: int = field(
        default=DECODE_BATCH, metadata={"help": "Prompts generated together for targets (and per generate call)."})
    target_prefix: str = field(
        default="",
        metadata={"help": "Text every target starts with; the clean answer is generated on from it (sycophancy: "
                  "'#### ', so every target carries its answer letter in the format the eval reads)."},
    )
    drop_unparsed_targets: bool = field(
        default=False, metadata={"help": "Sycophancy pairs: leave out pairs whose target has no parseable answer letter."}
    )
    targets_file: str | None = field(
        default=None, metadata={"help": "JSONL of targets {id, completion} to reuse (default: OUT/bct_targets.jsonl)."}
    )
    mix_fraction: float = field(
        default=0.0,
        metadata={"help": "Share of the training rows that are ordinary instructions answered by the model itself "
                  "(Chua et al. mix about 0.5): keeps ordinary behaviour, so SFT's gains are not bought by refusing "
                  "or answering everything one way."},
    )
    mix_kinds: str = field(
        default="ordinary,sensitive",
        metadata={"help": "Which of opct's instruction prompts to mix in: ordinary (everyday tasks), sensitive "
                  "(benign requests on sensitive-sounding subjects: for jailbreak training)."},
    )

    def __post_init__(self):
        if not 0.0 <= self.mix_fraction < 1.0:
            raise ValueError(f"mix_fraction must be in [0, 1), got {self.mix_fraction}")
        resolve_bf16(self)
        super().__post_init__()


def cached_labels(path: Path, pairs, make, chunk: int, desc: str) -> dict[str, dict]:
    """{pair id: row {id, completion, ...}} for every pair, from the JSONL cache at `path`. Missing
    rows are made by `make(pairs)` `chunk` pairs at a time and appended as they come, so a killed
    run loses at most one chunk (a line cut by the kill is made again)."""
    from tqdm.auto import tqdm

    done: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                done[row["id"]] = row
            except (json.JSONDecodeError, KeyError):
                continue
    todo = [p for p in pairs if p.id not in done]
    if todo:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tqdm(total=len(todo), desc=desc) as bar:
            for start in range(0, len(todo), max(1, chunk)):
                rows = make(todo[start : start + max(1, chunk)])
                with path.open("a", encoding="utf-8") as f:
                    for row in rows:
                        done[row["id"]] = row
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                bar.update(len(rows))
    return {p.id: done[p.id] for p in pairs}


def bct_targets(model, tokenizer, pairs, args: BCTConfig, target_prefix: str | None = None) -> dict[str, str]:
    """{pair id: the model's answer to the clean prompt}, generated once and cached. Answers start
    from `target_prefix` (default: the config's)."""
    from opct.generation import generate

    start = args.target_prefix if target_prefix is None else target_prefix
    prefix = start.rstrip()

    def answer(chunk):
        outs = generate(model, tokenizer, [p.clean for p in chunk], max_new_tokens=args.target_max_new_tokens,
                        temperature=args.target_temperature, batch_size=args.target_batch_size,
                        assistant_prefix=start)
        return [{"id": p.id, "completion": prefix + c.text} for p, (c,) in zip(chunk, outs)]

    path = Path(args.targets_file or Path(args.output_dir) / "bct_targets.jsonl")
    rows = cached_labels(path, pairs, answer, args.target_batch_size, "BCT targets")
    return {i: row["completion"] for i, row in rows.items()}


def mixed_in_pairs(n_pairs: int, args: BCTConfig):
    """The instruction pairs to add to `n_pairs` pairs so they make `mix_fraction` of the rows."""
    from opct.data.instructions import instruction_pairs

    if not args.mix_fraction:
        return []
    n = round(n_pairs * args.mix_fraction / (1 - args.mix_fraction))
    return instruction_pairs(n, seed=args.seed, kinds=tuple(k.strip() for k in args.mix_kinds.split(",") if k.strip()))


def bct_dataset(pairs, targets: dict[str, str]):
    """TRL's conversational prompt-completion format: wrapped prompt -> clean answer."""
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": p.wrapped, "completion": [{"role": "assistant", "content": targets[p.id]}]} for p in pairs]
    )


@contextmanager
def head_on_answer_positions():
    """Within the block, TRL's fused SFT loss projects only the positions that have a label through
    the output layer.

    TRL does so on Triton devices only; elsewhere (CPU) it projects every position, prompt and
    padding included, and masks the result afterwards, because a varying row count would recompile
    Neuron kernels. Eager CPU has nothing to recompile. The loss is the same, since the masked rows
    contribute zero. On SmolLM2 (audit self-training, 8 steps of 4 prompts, 2026-12-05) the same
    losses came out at 1.1 s per step instead of 2.1 s on reward-hacking prompts, and 2.3 s
    instead of 5.1 s on long MMLU prompts (means over the 8 steps). The switch is TRL's `trl.trainer.utils._use_triton`,
    which that module reads only for this choice; where it is missing nothing changes."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


class BCTTrainer(SFTTrainer):
    """`SFTTrainer` on (wrapped prompt, clean-prompt answer) made from a dataset of pairs."""

    def __init__(self, model, args: BCTConfig, train_dataset, processing_class=None, callbacks=None, **kwargs):
        model, tokenizer = prepare_model(model, args)
        tokenizer = processing_class or tokenizer
        if tokenizer is None:
            raise ValueError("BCTTrainer needs a tokenizer (processing_class) when given a model object")
        with initial_model(model):
            dataset = self.make_dataset(model, tokenizer, train_dataset, args)
        super().__init__(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[JsonlLogCallback(), *(callbacks or [])], **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        with head_on_answer_positions():
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    def make_dataset(self, model, tokenizer, train_dataset, args):
        """The (prompt, completion) rows to fine-tune on; subclasses choose other completions."""
        pairs = dataset_to_pairs(train_dataset)
        targets = bct_targets(model, tokenizer, pairs, args)
        self.target_report, pairs = check_answer_targets(pairs, targets, args.drop_unparsed_targets)
        if not pairs:
            raise ValueError("every BCT target lacks a parseable answer letter, so drop_unparsed_targets left no pair; "
                             "set target_prefix='#### ' or turn drop_unparsed_targets off")
        mix = mixed_in_pairs(len(pairs), args)
        if mix:  # answered plainly: the axis's target prefix is not theirs
            targets.update(bct_targets(model, tokenizer, mix, args, target_prefix=""))
            print(f"opct: BCT mixes {len(mix)} instruction prompts into {len(pairs)} pairs", flush=True)
        return bct_dataset(pairs + mix, targets)


def check_answer_targets(pairs, targets: dict[str, str], drop: bool) -> tuple[dict | None, list]:
    """For sycophancy pairs: how many targets carry no parseable answer letter (they train the
    model away from the answer format the eval reads), and the pairs kept (all, or the parseable
    ones with `drop`). None as the report for other axes."""
    from opct.evals.sycophancy import parse_answer

    mcq = [p for p in pairs if p.axis == "sycophancy"]
    if not mcq:
        return None, pairs
    answers = {p.id: parse_answer(targets[p.id]) for p in mcq}
    unparsed = {i for i, a in answers.items() if a is None}
    wrong = sum(1 for p in mcq if answers[p.id] not in (None, p.target))
    report = {"targets": len(mcq), "unparsed": len(unparsed), "unparsed_share": round(len(unparsed) / len(mcq), 4),
              "answer_not_target": wrong, "dropped": len(unparsed) if drop else 0}
    print(f"opct: BCT targets: {len(unparsed)} of {len(mcq)} carry no parseable answer letter"
          + (" (left out)" if drop and unparsed else "") + f"; {wrong} answer another letter than the pair's target",
          flush=True)
    return report, [p for p in pairs if not (drop and p.id in unparsed)]
