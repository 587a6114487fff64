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

from opct.chat import first_real_column, left_pad, position_ids_from_mask

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values): [B, heads, L, dim]
PADDING_SLACK = 0.1  # `length_groups`: padding allowed per group, as a share of its real tokens


def _heads_and_lasts(prompts: list[list[int]]) -> tuple[list[list[int]], torch.Tensor]:
    if any(len(p) < 2 for p in prompts):
        raise ValueError("shared-prefix scoring needs prompts of at least 2 tokens")
    return [p[:-1] for p in prompts], torch.tensor([p[-1] for p in prompts], dtype=torch.long)


def _cache_from(kv: KV):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k, v) for k, v in kv])


def _kv_of(cache) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


def padded_head_kv(model, heads: list[list[int]], pad: int) -> tuple[KV, torch.Tensor]:
    """Run the heads once as one left-padded batch: (per-layer KV, head attention mask [B, L])."""
    device = next(model.parameters()).device
    ids, mask = left_pad(heads, pad)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                use_cache=True, logits_to_keep=1)
    return _kv_of(out.cache), mask


def length_groups(lengths: list[int], slack: float = PADDING_SLACK) -> list[list[int]]:
    """Indices of `lengths` in groups of similar length (shortest first): a group grows while its
    padded size stays within `slack` of its real tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if group and (len(group) + 1) * lengths[i] <= (1 + slack) * (sum(lengths[j] for j in group) + lengths[i]):
            group.append(i)
        else:
            groups.append([i])
    return groups


def head_kv(model, heads: list[list[int]], pad: int, slack: float = PADDING_SLACK) -> tuple[KV, torch.Tensor]:
    """Run the heads once: (per-layer KV, head attention mask [B, L]), left-padded in the given
    order. Heads of similar length run together (`length_groups`), so little padding is computed:
    jailbreak wrappers run from 60 to 800 tokens, where one padded batch spent most of an
    evaluation's prefill on padding, and four random training prompts carry about 25% padding
    (benchmarks/README.md, "Prefill by length", "Training prompts by length"). With gradients on,
    they flow through the stacking into each group's forward."""
    groups = length_groups([len(h) for h in heads], slack)
    if len(groups) == 1:
        return padded_head_kv(model, heads, pad)
    rows: list[KV | None] = [None] * len(heads)
    for group in groups:
        kv, mask = padded_head_kv(model, [heads[i] for i in group], pad)
        for i, row in zip(group, _unpadded_rows(kv, mask, [len(heads[i]) for i in group])):
            rows[i] = row
    return _stack_left_padded(rows, [len(h) for h in heads])


def _unpadded_rows(kv: KV, mask: torch.Tensor, lengths: list[int]) -> list[KV]:
    """Each row of a left-padded KV batch as a one-row KV without its padding (views)."""
    width = mask.shape[1]
    return [[(a[r:r + 1, :, width - n:], b[r:r + 1, :, width - n:]) for a, b in kv] for r, n in enumerate(lengths)]


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
            for key, row in zip(missing, _unpadded_rows(kv, mask, [len(k) for k in missing])):
                fresh[key] = [(a.clone(), b.clone()) for a, b in row]  # not views: the padded batch is freed
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
    """One-row KV caches stacked into a left-padded batch. Keys and values keep their own dtypes:
    under bf16 autocast the keys come out of RoPE in fp32 and the values in bf16 (the teacher's
    cached values were upcast to fp32 before 2026-12-05)."""
    width = max(lengths)
    device = rows[0][0][0].device
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    out: KV = []
    for layer in range(len(rows[0])):
        k0, v0 = rows[0][layer]
        keys = k0.new_zeros((len(rows), k0.shape[1], width, k0.shape[-1]))
        values = v0.new_zeros((len(rows), v0.shape[1], width, v0.shape[-1]))
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
    first = first_real_column(mask)
    return [(a[start:stop, :, first:].detach().to(dtype), b[start:stop, :, first:].detach().to(dtype))
            for a, b in kv], mask[:, first:]


def decoding_cache(model, kv: KV, room: int):
    """A cache for `generate` that holds `kv` and has room for `room` more tokens: transformers'
    `StaticCache`, written in place, when the prompts are at least `room` tokens wide and every
    layer attends to the whole sequence; a `DynamicCache` otherwise. A DynamicCache grows by
    concatenation, copying all of itself at every decoding step: over 32 jailbreak prompts of
    60-400 tokens that was 38% of SmolLM2's decoding time, and the static cache decoded 1.35-1.5x
    faster. A static cache attends over its whole length from the first step, which cost more than
    it saved where the new tokens outnumber the prompt's (benchmarks/README.md, "Prefill by
    length"). Pass `disable_compile=True` to `generate`, which otherwise compiles for a static
    cache on a GPU, once per shape."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    width = kv[0][0].shape[2]
    if room > width:
        return _cache_from(kv)
    cache = StaticCache(config=model.config, max_cache_len=width + room)
    if len(cache.layers) != len(kv) or any(type(layer) is not StaticLayer for layer in cache.layers):
        return _cache_from(kv)
    for index, (keys, values) in enumerate(kv):
        cache.update(keys, values, index)
    return cache


@torch.no_grad()
def prefilled_cache(model, prompts: list[list[int]], num_samples: int, pad: int,
                    heads_kv: tuple[KV, torch.Tensor] | None = None, room: int | None = None):
    """(input ids [B*k, W], attention mask, cache) for `model.generate`: every head run once, with
    heads of similar length together (`head_kv`; or taken from `heads_kv`, detached, in
    the model's KV dtype) and repeated k times; generate then only processes each prompt's last
    token. The cache is a DynamicCache, or with `room` (the tokens generate will add: the last
    prompt token and the new ones) a `decoding_cache`."""
    heads, lasts = _heads_and_lasts(prompts)
    kv, mask = heads_kv if heads_kv is not None else head_kv(model, heads, pad)
    kv, mask = repeat_kv(kv, mask, num_samples)
    lasts = lasts.repeat_interleave(num_samples).to(mask.device)
    ids = torch.full(mask.shape, pad, dtype=torch.long)  # the heads, right-aligned to the cache's width
    for row, head in enumerate(h for h in heads for _ in range(num_samples)):
        ids[row, mask.shape[1] - len(head):] = torch.tensor(head, dtype=torch.long)
    ids = torch.cat([ids.to(mask.device), lasts[:, None]], 1)
    full_mask = torch.cat([mask, torch.ones_like(lasts)[:, None]], 1)
    return ids, full_mask, (_cache_from(kv) if room is None else decoding_cache(model, kv, room))
