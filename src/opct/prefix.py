"""Shared prompt prefixes: each prompt is run once, its KV cache serves all its k completions.

OPCT samples k completions per prompt and scores them twice (student on the wrapped prompt,
teacher on the clean one). Run naively, every prompt is processed k times in each of the three
passes. Here a prompt's last token is split off; the rest (the *head*) runs once per unique
prompt, its KV cache is repeated k times, and the k completions run on top of it, each starting
with the prompt's last token so the logit that predicts the first completion token comes out of
the same forward. With gradients on, the student's gradient flows through the repeated cache
into the head's forward, so the result equals the unshared forward (tested).

Layout: heads are left-padded (they end at one column) and completions right-padded, as in
`opct.chat`; position ids come from the attention mask, so padding changes nothing.

`PrefixCache` keeps the frozen teacher's head caches across steps, per prompt, bounded by bytes.

`student_heads` runs the student's heads once with gradients: the same KV then serves as the
sampling prefill (detached) and, in the loss, under the completions (with its graph), so a step
processes each wrapped prompt once instead of twice.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from opct.chat import left_pad, position_ids_from_mask

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values): [B, heads, L, dim]


def _heads_and_lasts(prompts: list[list[int]]) -> tuple[list[list[int]], torch.Tensor]:
    if any(len(p) < 2 for p in prompts):
        raise ValueError("shared-prefix scoring needs prompts of at least 2 tokens")
    return [p[:-1] for p in prompts], torch.tensor([p[-1] for p in prompts], dtype=torch.long)


def _cache_from(kv: KV):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k, v) for k, v in kv])


def _kv_of(cache) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


def head_kv(model, heads: list[list[int]], pad: int) -> tuple[KV, torch.Tensor]:
    """Run the left-padded heads once: (per-layer KV, head attention mask [B, L])."""
    device = next(model.parameters()).device
    ids, mask = left_pad(heads, pad)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                use_cache=True, logits_to_keep=1)
    return _kv_of(out.cache), mask


def repeat_kv(kv: KV, mask: torch.Tensor, k: int) -> tuple[KV, torch.Tensor]:
    if k == 1:
        return kv, mask
    return ([(a.repeat_interleave(k, 0), b.repeat_interleave(k, 0)) for a, b in kv],
            mask.repeat_interleave(k, 0))


def tail_logits(model, kv: KV, head_mask: torch.Tensor, lasts: torch.Tensor,
                completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Logits [N, C, V] predicting each completion token, given the heads' KV (N rows)."""
    device = head_mask.device
    tail = torch.cat([lasts.to(device)[:, None], completion_ids.to(device)], 1)
    tail_mask = torch.cat([torch.ones_like(lasts, device=device)[:, None], completion_mask.to(device).long()], 1)
    full_mask = torch.cat([head_mask, tail_mask], 1)
    positions = position_ids_from_mask(full_mask)[:, -tail.shape[1]:]
    out = model(input_ids=tail, attention_mask=full_mask, position_ids=positions,
                cache=_cache_from(kv), use_cache=True, logits_to_keep=tail.shape[1])
    return out.logits[:, :-1]


def shared_prefix_logits(model, prompts: list[list[int]], completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, num_samples: int, pad: int,
                         cache: "PrefixCache | None" = None,
                         heads_kv: tuple[KV, torch.Tensor] | None = None) -> torch.Tensor:
    """Completion logits [B*k, C, V] for B unique prompts with k completions each (row i*k + j is
    completion j of prompt i). Equal to `opct.trainers.opct.completion_logits` on the repeated,
    concatenated sequences, at about 1/k of the prompt cost. With `cache`, heads come from and go
    to it (use only for a frozen model); `heads_kv` is the heads' (KV, mask) already computed by
    `head_kv` with this model (`student_heads`)."""
    heads, lasts = _heads_and_lasts(prompts)
    if heads_kv is not None:
        kv, mask = heads_kv
    elif cache is not None:
        kv, mask = cache.kv(model, heads, pad)
    else:
        kv, mask = head_kv(model, heads, pad)
    kv, mask = repeat_kv(kv, mask, num_samples)
    return tail_logits(model, kv, mask, lasts.repeat_interleave(num_samples), completion_ids, completion_mask)


class PrefixCache:
    """Head KV caches of a frozen model, per prompt, kept across steps up to `max_bytes` (least
    recently used first out). Keyed by the head's token ids; `model_key` ties the entries to one
    model: a different key clears the cache."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self.bytes = 0
        self.model_key: object = None
        self.hits = self.misses = 0

    @staticmethod
    def _size(kv: KV) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in kv)

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def bind(self, model_key: object) -> None:
        if model_key != self.model_key:
            self.clear()
            self.model_key = model_key

    def _put(self, key: tuple[int, ...], kv: KV) -> None:
        size = self._size(kv)
        if size > self.max_bytes:
            return
        while self.entries and self.bytes + size > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= self._size(old)
        self.entries[key] = kv
        self.bytes += size

    @torch.no_grad()
    def kv(self, model, heads: list[list[int]], pad: int) -> tuple[KV, torch.Tensor]:
        """Left-padded KV and mask for `heads`, computing only the ones not cached."""
        keys = [tuple(h) for h in heads]
        missing = list(dict.fromkeys(k for k in keys if k not in self.entries))
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh: dict[tuple[int, ...], KV] = {}
        if missing:
            kv, mask = head_kv(model, [list(k) for k in missing], pad)
            width = mask.shape[1]
            for i, key in enumerate(missing):
                start = width - len(key)
                fresh[key] = [(a[i:i + 1, :, start:].clone(), b[i:i + 1, :, start:].clone()) for a, b in kv]
        rows = []
        for key in keys:
            if key in self.entries:
                self.entries.move_to_end(key)
                rows.append(self.entries[key])
            else:
                rows.append(fresh[key])
        for key, kv in fresh.items():
            self._put(key, kv)
        return _stack_left_padded(rows, [len(k) for k in keys])


def _stack_left_padded(rows: list[KV], lengths: list[int]) -> tuple[KV, torch.Tensor]:
    width = max(lengths)
    first = rows[0][0][0]
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=first.device)
    out: KV = []
    for layer in range(len(rows[0])):
        keys = first.new_zeros((len(rows), first.shape[1], width, rows[0][layer][0].shape[-1]))
        values = first.new_zeros((len(rows), first.shape[1], width, rows[0][layer][1].shape[-1]))
        for i, (row, n) in enumerate(zip(rows, lengths)):
            keys[i, :, width - n:] = row[layer][0][0]
            values[i, :, width - n:] = row[layer][1][0]
        out.append((keys, values))
    for i, n in enumerate(lengths):
        mask[i, width - n:] = 1
    return out, mask


def student_heads(model, prompts: list[list[int]], pad: int) -> tuple[KV, torch.Tensor]:
    """(KV, mask) of the prompts' heads under `model`, with gradients when they are on: pass it to
    `shared_prefix_logits` for the loss and, through `detached_kv`, to `prefilled_cache` for sampling."""
    heads, _ = _heads_and_lasts(prompts)
    return head_kv(model, heads, pad)


def detached_kv(heads_kv: tuple[KV, torch.Tensor], dtype: torch.dtype, start: int = 0,
                stop: int | None = None) -> tuple[KV, torch.Tensor]:
    """Rows start:stop of `heads_kv`, detached and in `dtype`, without the columns that are padding
    in all of them."""
    kv, mask = heads_kv
    mask = mask[start:stop]
    first = int(mask.any(0).long().argmax())
    return [(a[start:stop, :, first:].detach().to(dtype), b[start:stop, :, first:].detach().to(dtype))
            for a, b in kv], mask[:, first:]


@torch.no_grad()
def prefilled_cache(model, prompts: list[list[int]], num_samples: int, pad: int,
                    heads_kv: tuple[KV, torch.Tensor] | None = None):
    """(input ids [B*k, W], attention mask, DynamicCache) for `model.generate`: every head run
    once (or taken from `heads_kv`, detached, in the model's KV dtype) and repeated k times;
    generate then only processes each prompt's last token."""
    heads, lasts = _heads_and_lasts(prompts)
    kv, mask = heads_kv if heads_kv is not None else head_kv(model, heads, pad)
    kv, mask = repeat_kv(kv, mask, num_samples)
    lasts = lasts.repeat_interleave(num_samples).to(mask.device)
    ids = torch.full(mask.shape, pad, dtype=torch.long)  # the heads, right-aligned to the cache's width
    for row, head in enumerate(h for h in heads for _ in range(num_samples)):
        ids[row, mask.shape[1] - len(head):] = torch.tensor(head, dtype=torch.long)
    ids = torch.cat([ids.to(mask.device), lasts[:, None]], 1)
    full_mask = torch.cat([mask, torch.ones_like(lasts)[:, None]], 1)
    return ids, full_mask, _cache_from(kv)
