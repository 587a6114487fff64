"""Chat messages -> token ids, and padding helpers shared by generation, trainers and evals.

Every prompt in opct goes through `render_prompt`, so teacher and student (and evals) always
see the same chat template (a mismatch is a systematic per-token log-prob bias).
"""

from __future__ import annotations

import torch


def render_prompt(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a chat conversation rendered with the tokenizer's own template, ready for
    the assistant's answer (special tokens come from the template, none are added twice)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-align sequences (pad on the left): all prompts end at the same column, the
    generation point. Returns (ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def right_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-align sequences (pad on the right). Returns (ids, mask)."""
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
    return ids, mask


def first_real_column(mask: torch.Tensor) -> int:
    """The first column of a left-padded mask that is real in some row: the columns before it are
    padding in every row and can be cut."""
    return int(mask.any(0).long().argmax())


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token, so left padding changes nothing."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
