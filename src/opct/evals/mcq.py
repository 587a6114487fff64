"""Multiple-choice scoring: a model's next-token distribution over the option letters.

`letter_probs` renders each conversation with the chat template and generation prompt,
appends the start of the answer (``"#### "`` by default, the format the MCQ prompts ask for)
and reads the logits of the next token restricted to the letter tokens. One forward per batch,
no sampling: a cheap, deterministic answer that works for multi-turn conversations too.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from opct.chat import left_pad, pad_id, position_ids_from_mask, render_prompt
from opct.generation import autocast_context


class LetterTokenError(ValueError):
    """A letter that the tokenizer does not encode as one token after the answer prefix."""


def mcq_prompt(
    question: str,
    options: Sequence[str] | Mapping[str, str],
    instruction: bool | str = True,
) -> str:
    """The user text of a multiple-choice question in the sycophancy pairs' clean format
    (`opct.data.sycophancy.clean_prompt`): the question, one "(A) option" line per option,
    then the "#### X" answer instruction (none when False; a string replaces it).
    `options` is a list (lettered A, B, ...) or a letter -> text mapping."""
    from opct.data.sycophancy import INSTRUCTION

    items = list(options.items()) if isinstance(options, Mapping) else [(chr(65 + i), o) for i, o in enumerate(options)]
    text = question + "\n\n" + "\n".join(f"({letter}) {opt}" for letter, opt in items)
    if instruction:
        text += "\n\n" + (instruction if isinstance(instruction, str) else INSTRUCTION)
    return text


def letter_token_ids(tokenizer, letters: Sequence[str] = "ABCD", answer_prefix: str = "#### ") -> tuple[list[int], list[int]]:
    """(context ids, letter ids): the prefix tokens that every `prefix + letter` encoding shares,
    and the single token that follows them for each letter.

    Tokenizers often merge a trailing space into the letter (``"#### A"`` -> ``"####", " A"``),
    so the shared context may end before the prefix's last characters; scoring the next token
    after that context matches how the model itself would write the answer.
    """
    letters = list(letters)
    if not letters or len(set(letters)) != len(letters):
        raise LetterTokenError(f"letters must be distinct and non-empty, got {letters!r}")
    encs = [tokenizer(answer_prefix + L, add_special_tokens=False)["input_ids"] for L in letters]
    common = 0
    while all(len(e) > common for e in encs) and len({e[common] for e in encs}) == 1:
        common += 1
    context = encs[0][:common]
    ids = []
    for L, e in zip(letters, encs):
        rest = e[common:]
        if len(rest) != 1:
            pieces = [tokenizer.decode([t]) for t in rest]
            raise LetterTokenError(
                f"letter {L!r} is not a single token after the answer prefix {answer_prefix!r}: "
                f"{answer_prefix + L!r} ends in tokens {pieces}; use single-token letters or another prefix"
            )
        ids.append(rest[0])
    if len(set(ids)) != len(ids):
        raise LetterTokenError(f"letters {letters!r} map to non-distinct tokens {ids}")
    return context, ids


@torch.no_grad()
def letter_probs(
    model,
    tokenizer,
    conversations: Sequence[list[dict[str, str]]],
    letters: Sequence[str] = "ABCD",
    answer_prefix: str = "#### ",
    batch_size: int = 8,
    progress: bool | str = False,
    bf16: bool = True,
) -> torch.Tensor:
    """float32 tensor [N, len(letters)]: per conversation, the softmax of the next-token logits
    restricted to the letter tokens, right after the generation prompt and `answer_prefix`.

    Batches are left-padded with an attention mask and mask-derived position ids (so padding
    does not change a row's result) and sorted by length; rows come back in input order.
    bf16 autocast is used when `bf16` (weights stay as they are).
    """
    from tqdm.auto import tqdm

    context, ids = letter_token_ids(tokenizer, letters, answer_prefix)
    out = torch.empty((len(conversations), len(ids)), dtype=torch.float32)
    if not conversations:
        return out
    seqs = [render_prompt(tokenizer, conv) + context for conv in conversations]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    device = next(model.parameters()).device
    letter_index = torch.tensor(ids, device=device)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(seqs), desc=progress if isinstance(progress, str) else "letter probs", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            input_ids, mask = left_pad([seqs[i] for i in batch], pad_id(tokenizer))
            input_ids, mask = input_ids.to(device), mask.to(device)
            with autocast_context(device, bf16):
                logits = model(
                    input_ids=input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                    logits_to_keep=1,  # only the next-token logits: no [B, T, V] tensor
                ).logits
            # left padding: every row's next-token logits sit in the last column
            picked = logits[:, -1, :].float().index_select(-1, letter_index)
            out[batch] = picked.softmax(-1).cpu()
            bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return out
