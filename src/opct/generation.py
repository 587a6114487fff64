"""Batched sampling from chat prompts.

Prompts are left-padded (right-aligned) so a batch generates together; generation runs under
bf16 autocast where bf16 is native (about 1.5x faster than fp32 on the embedded models on an AVX-512
CPU), in fp32 elsewhere (`opct.precision`).
Completions stop at EOS and keep it: the EOS is a real token the model must learn to emit.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any

import torch

from opct.chat import left_pad, pad_id, render_prompt
from opct.defaults import DECODE_BATCH
from opct.precision import use_bf16


@dataclass
class Completion:
    text: str  # decoded without special tokens
    token_ids: list[int]  # generated ids, the final EOS included when the model stopped
    finished: bool  # True when the model emitted EOS before max_new_tokens


def autocast_context(device: torch.device | str, enabled: bool = True, model=None):
    """bf16 autocast on `device` when `enabled` and bf16 is native there, or when `model` holds bf16
    weights (`opct.precision.use_bf16`); otherwise nothing."""
    device = torch.device(device)
    if not use_bf16(enabled, device, model):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device | str):
    """Run the block with the CPU generator, and `device`'s when it is a GPU, seeded with `seed`;
    the caller's streams are restored afterwards."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def weights_cast_once(model, enabled: bool = True):
    """Under bf16 autocast, let each frozen fp32 weight be cast to bf16 once per call, not at every
    decoding step. Autocast caches its casts only of leaf tensors that require grad, and a trained
    model loaded for evaluation is frozen (peft freezes its base): greedy decoding of 48 tokens with
    SmolLM2 took 7.6 s frozen and 3.1 s with the flags on (batch 1, one thread, 2026-12-03; same
    tokens). The flags are set for the call only (nothing is recorded under no_grad); the cached
    copies cost half the fp32 weights' memory while it runs, as for an unfrozen model. Nothing is
    flagged where the call computes in fp32 (`opct.precision.use_bf16`)."""
    enabled = use_bf16(enabled, next(model.parameters()).device, model)
    frozen = [p for p in model.parameters() if not p.requires_grad and p.dtype == torch.float32] if enabled else []
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


def eos_ids(tokenizer, model=None) -> list[int]:
    ids = {tokenizer.eos_token_id}
    cfg = getattr(model, "generation_config", None)
    extra = getattr(cfg, "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(extra)
    return sorted(i for i in ids if i is not None)


def trim_completion(ids: list[int], eos: list[int]) -> tuple[list[int], bool]:
    """Cut a generated row after its first EOS (kept); padding after it is dropped."""
    for i, t in enumerate(ids):
        if t in eos:
            return ids[: i + 1], True
    return ids, False


class InverseCDFSampler:
    """A `generate` logits processor that draws the next token itself, by inverse CDF: one uniform
    number per row against the cumulative softmax(scores / temperature), restricted to the nucleus
    when top_p < 1. It returns 0 at the drawn token and -inf elsewhere, so greedy decoding emits
    it. Same distribution as transformers' sampling, whose `torch.multinomial` draws one
    exponential number per vocabulary entry: on this CPU 6.7 ms per step for 8 rows of SmolLM2's
    49k vocabulary, about 10% of a decoding step."""

    def __init__(self, temperature: float, top_p: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.top_p = float(temperature), float(top_p)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        order = None
        if self.top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True)
            probs[probs.cumsum(-1) - probs >= self.top_p] = 0  # keep the smallest head with mass >= top_p
        cdf = probs.double().cumsum(-1)
        u = torch.rand(len(cdf), 1, dtype=torch.float64, device=cdf.device) * cdf[:, -1:]
        drawn = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)  # first index with cdf > u
        if order is not None:
            drawn = order.gather(-1, drawn)
        return torch.full_like(scores, float("-inf")).scatter_(-1, drawn, 0.0)


def completions_of(tokenizer, rows: list[list[int]], eos: list[int]) -> list[Completion]:
    """Generated rows (prompt columns removed) as completions, each cut after its first EOS."""
    completions = []
    for row in rows:
        toks, finished = trim_completion(row, eos)
        completions.append(Completion(tokenizer.decode(toks, skip_special_tokens=True), toks, finished))
    return completions


@torch.no_grad()
def generate_ids(
    model,
    tokenizer,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    bf16: bool = True,
    num_samples: int = 1,
    heads_kv=None,
) -> list[Completion]:
    """One batch: `num_samples` completions per prompt (greedy when temperature == 0), in the
    order prompt 0's samples, prompt 1's, ... With several samples, or prompts of mixed lengths
    longer than the answers, the prompts are prefilled first, each once (those of similar length
    together), and the KV repeated for the samples (`opct.prefix.prefilled_cache`); otherwise one
    left-padded batch goes to `generate` (prefilling short prompts apart measured slower before
    long answers: benchmarks/README.md, "Prefill by length"). `heads_kv` is that prefill already
    made (every prompt but its last token, `opct.prefix.detached_kv`). Decoding stops when every
    row has finished."""
    from opct.prefix import length_groups, prefilled_cache

    device = next(model.parameters()).device
    eos = eos_ids(tokenizer, model)
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id(tokenizer), eos_token_id=eos)
    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)  # sampling: InverseCDFSampler
    if temperature > 0:
        from transformers import LogitsProcessorList

        kwargs["logits_processor"] = LogitsProcessorList([InverseCDFSampler(temperature, top_p)])
    was_training = model.training
    model.eval()
    try:
        with autocast_context(device, bf16, model), weights_cast_once(model, bf16):
            lengths = [len(p) for p in prompt_ids]
            if heads_kv is not None or (min(lengths) > 1 and (num_samples > 1 or (
                    max(lengths) > max_new_tokens and len(length_groups(lengths)) > 1))):
                ids, mask, cache = prefilled_cache(model, prompt_ids, num_samples, pad_id(tokenizer), heads_kv,
                                                   room=max_new_tokens + 1)
                kwargs.update(cache=cache, disable_compile=True)
            else:
                ids, mask = left_pad([p for p in prompt_ids for _ in range(num_samples)], pad_id(tokenizer))
                ids, mask = ids.to(device), mask.to(device)
            out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    finally:
        model.train(was_training)
    return completions_of(tokenizer, out[:, ids.shape[1]:].tolist(), eos)


@torch.no_grad()
def beam_search_ids(model, tokenizer, prompt_ids: list[list[int]], *, num_beams: int = 4,
                    max_new_tokens: int = 256, bf16: bool = True) -> list[Completion]:
    """The highest-scoring beam-search completion of each prompt (one batch, transformers' beam search)."""
    device = next(model.parameters()).device
    eos = eos_ids(tokenizer, model)
    ids, mask = left_pad(prompt_ids, pad_id(tokenizer))
    was_training = model.training
    model.eval()
    try:
        with autocast_context(device, bf16, model), weights_cast_once(model, bf16):
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=num_beams,
                                 do_sample=False, temperature=None, top_p=None, top_k=None, early_stopping=True,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad_id(tokenizer), eos_token_id=eos)
    finally:
        model.train(was_training)
    return completions_of(tokenizer, out[:, ids.shape[1]:].tolist(), eos)


def generate(
    model,
    tokenizer,
    prompts: list[list[dict[str, str]]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_samples: int = 1,
    batch_size: int = DECODE_BATCH,
    bf16: bool = True,
    progress: bool | str = False,
    assistant_prefix: str = "",
) -> list[list[Completion]]:
    """Completions for chat prompts: a list (per prompt) of `num_samples` completions.

    Prompts are sorted by length so each batch pads little; results come back in input order. With
    temperature 0 a prompt given several times is decoded once. A call decodes about `batch_size`
    rows: `batch_size // num_samples` prompts (at least one), each prefilled once for all its
    samples (`generate_ids`).
    `assistant_prefix` starts every answer (the completions are what follows it); its trailing
    whitespace is left for the model to write, since tokenizers merge it into the next token.
    """
    from tqdm.auto import tqdm

    prefix = tokenizer(assistant_prefix.rstrip(), add_special_tokens=False)["input_ids"] if assistant_prefix.strip() else []
    rendered = [render_prompt(tokenizer, p) + prefix for p in prompts]
    # Greedy answers to the same prompt are the same: the copies of a prompt are decoded once.
    copies: dict[Any, list[int]] = {}
    for i, ids in enumerate(rendered):
        copies.setdefault(tuple(ids) if temperature == 0 else i, []).append(i)
    order = sorted(copies.values(), key=lambda same: len(rendered[same[0]]))
    per_call = max(1, batch_size // num_samples)
    results: list[list[Completion]] = [[] for _ in prompts]
    bar = tqdm(total=len(prompts) * num_samples, desc=progress if isinstance(progress, str) else "generating",
               disable=not progress)
    for start in range(0, len(order), per_call):
        batch = order[start : start + per_call]
        outs = generate_ids(model, tokenizer, [rendered[same[0]] for same in batch], max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, bf16=bf16, num_samples=num_samples)
        for j, same in enumerate(batch):
            for i in same:
                results[i] = outs[j * num_samples : (j + 1) * num_samples]
        bar.update(sum(map(len, batch)) * num_samples)
    bar.close()
    return results


def unallocated(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """A placeholder of `shape` that holds one element (every entry is it), for a weight whose memory
    is given later."""
    return torch.empty((), dtype=dtype, device=device).expand(shape)


class SamplingCopy:
    """The LoRA student with its adapter merged, used only for sampling.

    Decoding through the training wrapper runs the unmerged LoRA matmuls at every step (measured:
    about 50% slower on SmolLM2, 20% on Qwen 0.5B). This copy holds merged weights in `dtype`
    for the adapted matrices only; every other tensor (embeddings, norms, the output layer) is the
    student's own when it already has that dtype (the bf16 frozen base), so the copy costs one
    extra set of adapted matrices, never a second model. `sync()` refreshes them (W + scale * B @ A,
    one fused kernel per matrix) after each optimizer step; `release()` frees them until the next
    `sync()`, so that the training step can use that memory; `merged()` does both around sampling.
    In fp32 where opct's linears run on oneDNN, the merged matrices are kept in oneDNN's packed
    layout (`opct.kernels.pack_weight`; sampling's matmuls about 1.5x faster).
    Built on the meta device and filled tensor by tensor; tied weights stay tied.
    """

    def __init__(self, peft_model, dtype: torch.dtype = torch.bfloat16):
        import copy

        from peft.tuners.lora import LoraLayer

        self.student = peft_model
        self.dtype = dtype
        base = peft_model.get_base_model()
        prefix = "base_model.model."
        adapted = {
            name[len(prefix):]: module for name, module in peft_model.named_modules()
            if isinstance(module, LoraLayer) and name.startswith(prefix)
        }
        with torch.device("meta"):
            model = type(base)(copy.deepcopy(base.config))
        # Parameter names of the plain model; LoRA-wrapped layers keep theirs under ".base_layer".
        source = dict(base.named_parameters(remove_duplicate=False))
        converted: dict[int, torch.Tensor] = {}  # tied weights stay tied
        state = {}
        for name in model.state_dict():
            owner, _, leaf = name.rpartition(".")
            tensor = source.get(name, source.get(f"{owner}.base_layer.{leaf}"))
            if tensor is None:
                raise RuntimeError(f"SamplingCopy: no student tensor for {name}")
            if owner in adapted and leaf == "weight":
                state[name] = unallocated(tensor.shape, dtype, tensor.device)  # given memory by sync()
                continue
            key = id(tensor)
            if key not in converted:
                converted[key] = tensor.detach() if tensor.dtype == dtype else tensor.detach().to(dtype=dtype, copy=True)
            state[name] = converted[key]
        model.load_state_dict(state, assign=True)
        # Non-persistent buffers (rotary frequencies) are not in the state dict: copy them as they are.
        for name, buffer in base.named_buffers():
            owner, _, leaf = name.rpartition(".")
            module = model.get_submodule(owner.replace(".base_layer", "")) if owner else model
            if getattr(module, leaf, None) is not None and getattr(module, leaf).is_meta:
                module._buffers[leaf] = buffer.detach().clone()
        left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"SamplingCopy: tensors left unfilled: {left[:5]}")
        model.generation_config = copy.deepcopy(base.generation_config)
        from opct.models import fast_layers

        self.model = fast_layers(model.eval().requires_grad_(False))
        targets = dict(self.model.named_modules())
        self.pairs = [(module, targets[name]) for name, module in adapted.items()]
        self.buffer: torch.Tensor | None = None  # every merged matrix, in one allocation
        from opct.kernels import OneDNNLinear

        self.packs = dtype == torch.float32 and all(type(t) is OneDNNLinear and t.weight.device.type == "cpu"
                                                     for _, t in self.pairs)
        self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Fills the merged matrices from the student's current weights, allocating them after `release()`."""
        if self.packs:
            from opct.kernels import pack_weight

            scratch = torch.empty(max((t.weight.numel() for _, t in self.pairs), default=0), dtype=self.dtype)
            for lora, target in self.pairs:
                merged = scratch[: target.weight.numel()].view(target.weight.shape)
                self._merge(lora, merged)
                target.packed = pack_weight(merged)
            return
        if self.buffer is None and self.pairs:
            # One allocation, so that freeing it returns the memory to the system: freed matrices of
            # a few MB each stay in the C allocator's heap, and the process's peak did not go down.
            align = 16  # elements: 64-byte aligned rows for the matmul kernels
            sizes = [-(-t.weight.numel() // align) * align for _, t in self.pairs]
            self.buffer = torch.empty(sum(sizes), dtype=self.dtype, device=self.pairs[0][1].weight.device)
            for (_, target), offset in zip(self.pairs, itertools.accumulate([0] + sizes)):
                target.weight.data = self.buffer[offset : offset + target.weight.numel()].view(target.weight.shape)
        for lora, target in self.pairs:
            self._merge(lora, target.weight)

    def _merge(self, lora, out: torch.Tensor) -> None:
        weight = lora.get_base_layer().weight
        adapters = [a for a in lora.active_adapters if a in lora.lora_A]
        plain = len(adapters) == 1 and not lora.fan_in_fan_out and not lora.use_dora.get(adapters[0], False)
        if plain and weight.dtype == self.dtype:
            a = adapters[0]  # out = W + scale * B @ A, in one kernel
            torch.addmm(weight, lora.lora_B[a].weight.to(self.dtype), lora.lora_A[a].weight.to(self.dtype),
                        alpha=lora.scaling[a], out=out)
            return
        for a in adapters:
            weight = weight + lora.get_delta_weight(a)
        out.copy_(weight)

    def release(self) -> None:
        """Frees the merged matrices (1.4 GB for Qwen 0.5B in fp32) until the next `sync()`."""
        for _, target in self.pairs:
            target.weight.data = unallocated(target.weight.shape, self.dtype, target.weight.device)
            target.packed = None
        self.buffer = None

    @contextlib.contextmanager
    def merged(self):
        """The copy, in step with the student, for the length of a `with` block; its merged matrices
        are freed afterwards."""
        self.sync()
        try:
            yield self.model
        finally:
            self.release()
