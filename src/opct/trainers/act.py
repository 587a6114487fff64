"""Activation consistency training (ACT, Irpan et al. 2025).

L2 distance between residual-stream activations on the wrapped prompt and a stop-gradient
copy on the clean prompt, over the positions of their shared suffix (which ends at the
generation point: the chat template's assistant header and usually the end of the question).
No response tokens are involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from opct import losses
from opct.chat import first_real_column, left_pad, pad_id, position_ids_from_mask, render_prompt
from opct.data.schema import pair_from_row
from opct.prefix import length_groups
from opct.trainers.base import ConsistencyArguments, WindowTrainer, cut_left, prepare_model


@dataclass
class ACTConfig(ConsistencyArguments):
    """Configuration of `ACTTrainer` (every `TrainingArguments` field applies too)."""

    output_dir: str = field(default="runs/act", metadata={"help": "Run directory."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
    layers: str = field(
        default="all",
        metadata={"help": "Residual-stream layers compared: 'all', or comma-separated indices into hidden_states "
                  "(0 = embeddings, -1 = last layer)."},
    )
    max_suffix_tokens: int = field(default=256, metadata={"help": "Compare at most this many suffix positions (the last ones)."})


def shared_suffix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        n += 1
    return n


class ACTTrainer(WindowTrainer):
    """`Trainer` for ACT on a `datasets.Dataset` of contrastive pairs."""

    def __init__(self, model, args: ACTConfig, train_dataset, processing_class=None, **kwargs):
        model, tokenizer = prepare_model(model, args)
        processing_class = processing_class or tokenizer
        if processing_class is None:
            raise ValueError("ACTTrainer needs a tokenizer (processing_class) when given a model object")
        super().__init__(model=model, args=args, train_dataset=train_dataset, processing_class=processing_class, **kwargs)

    def prepare_batch(self, rows: list[dict[str, Any]], micro_index: int) -> dict[str, Any]:
        tok, args = self.processing_class, self.args
        pairs = [pair_from_row(r) for r in rows]
        wrapped = [cut_left(render_prompt(tok, p.wrapped), args.max_prompt_length) for p in pairs]
        clean = [cut_left(render_prompt(tok, p.clean), args.max_prompt_length) for p in pairs]
        suffix = [min(shared_suffix_length(w, c), args.max_suffix_tokens) for w, c in zip(wrapped, clean)]
        width = max(suffix)
        # Right-aligned prompts: the shared suffix is the last `suffix[i]` columns of row i.
        suffix_mask = torch.zeros(len(pairs), width)
        for i, n in enumerate(suffix):
            suffix_mask[i, width - n:] = 1
        w_ids, w_mask = left_pad(wrapped, pad_id(tok))
        c_ids, c_mask = left_pad(clean, pad_id(tok))
        return {"num_items": sum(suffix), "wrapped_ids": w_ids, "wrapped_mask": w_mask,
                "clean_ids": c_ids, "clean_mask": c_mask, "suffix_mask": suffix_mask}

    def hidden_states(self, model, ids, mask, width: int) -> list[torch.Tensor]:
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                    output_hidden_states=True, use_cache=False, logits_to_keep=1)
        states = out.hidden_states
        spec = self.args.layers
        chosen = states[1:] if spec == "all" else [states[int(i)] for i in spec.split(",")]
        return [h[:, -width:] for h in chosen]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The loss of the micro-batch, its rows run in groups of similar wrapped length
        (`opct.prefix.length_groups`), so the forwards and the backward compute little padding
        (benchmarks/README.md, "Training prompts by length"); each group's part is over the
        whole micro-batch's positions, so the sum is the one-batch loss."""
        suffix_mask = inputs["suffix_mask"]
        num_positions = num_items_in_batch if num_items_in_batch is not None else suffix_mask.sum()
        loss, l2_sum = 0.0, 0.0
        for group in length_groups(inputs["wrapped_mask"].sum(1).tolist()):
            rows = torch.tensor(group)
            w_ids, w_mask = unpadded_rows(inputs["wrapped_ids"], inputs["wrapped_mask"], rows)
            c_ids, c_mask = unpadded_rows(inputs["clean_ids"], inputs["clean_mask"], rows)
            suffix = suffix_mask[rows]
            width = max(1, int(suffix.sum(1).max()))  # the group's longest shared suffix
            suffix = suffix[:, -width:]
            wrapped = self.hidden_states(model, w_ids, w_mask, width)
            with torch.no_grad():
                clean = self.hidden_states(model, c_ids, c_mask, width)
            group_loss, stats = losses.act_l2_loss(wrapped, clean, suffix, num_positions)
            loss = loss + group_loss
            l2_sum += stats["act_l2"] * stats["positions"]
        self.record(act_l2=l2_sum / max(float(suffix_mask.sum()), 1.0),
                    suffix_tokens=float(suffix_mask.sum()) / suffix_mask.shape[0])
        loss = loss * self.loss_scale()
        return (loss, {}) if return_outputs else loss


def unpadded_rows(ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` of a left-padded batch, without the columns that are padding in all of them."""
    ids, mask = ids[rows], mask[rows]
    first = first_real_column(mask)
    return ids[:, first:], mask[:, first:]
