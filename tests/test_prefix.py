"""Shared prompt prefixes: the same log-probs and gradients as the unshared forward, a teacher
cache that is reused, invalidated and bounded, and generation that matches plain generation."""

import pytest
import torch
from conftest import build_tiny_tokenizer, tiny_trained_lora

from opct.chat import pad_id, render_prompt
from opct.generation import generate_ids
from opct.prefix import PrefixCache, shared_prefix_logits
from opct.trainers.base import cast_frozen
from opct.trainers.opct import build_scoring_batch, completion_logits

MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "The answer is A"}],
    [{"role": "user", "content": "0 1 2"}],
]


@pytest.fixture(scope="module")
def setup():
    tok = build_tiny_tokenizer()
    model = tiny_trained_lora(tok)
    prompts = [render_prompt(tok, m) for m in MESSAGES]
    k = 3
    g = torch.Generator().manual_seed(0)
    completions = [torch.randint(5, 300, (int(n),), generator=g).tolist()
                   for n in torch.randint(1, 7, (len(prompts) * k,), generator=g)]
    return tok, model, prompts, k, completions


def logprob_sum(logits, ids, mask):
    return (logits.float().log_softmax(-1).gather(-1, ids[..., None])[..., 0] * mask).sum()


def unshared_and_shared(model, tok, prompts, k, completions):
    pad = pad_id(tok)
    repeated = [p for p in prompts for _ in range(k)]
    batch = build_scoring_batch(repeated, repeated, completions, pad)
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    results = []
    for shared in (False, True):
        model.zero_grad()
        if shared:
            logits = shared_prefix_logits(model, prompts, ids, mask, k, pad)
        else:
            logits = completion_logits(model, batch["student_ids"], batch["student_mask"], mask.shape[1])
        logprob_sum(logits, ids, mask).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logits.detach().float(), grads))
    return results, mask.bool()


def test_shared_prefix_matches_unshared_logits_and_gradients(setup):
    from opct.prefix import length_groups

    tok, model, prompts, k, completions = setup
    assert len(length_groups([len(p) - 1 for p in prompts])) > 1  # heads run in groups, gradients through the stacking
    ((ref, ref_grads), (got, got_grads)), mask = unshared_and_shared(model, tok, prompts, k, completions)
    assert torch.allclose(ref[mask], got[mask], atol=1e-5)
    assert ref_grads.keys() == got_grads.keys() and any("lora_A" in n for n in ref_grads)
    for name in ref_grads:
        assert torch.allclose(ref_grads[name], got_grads[name], atol=1e-5, rtol=1e-4), name


def test_shared_prefix_matches_under_bf16_base_and_autocast(setup):
    tok, _, prompts, k, completions = setup
    model = tiny_trained_lora(tok)
    cast_frozen(model, torch.bfloat16)
    assert all(p.dtype == (torch.float32 if p.requires_grad else torch.bfloat16) for p in model.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ((ref, ref_grads), (got, got_grads)), mask = unshared_and_shared(model, tok, prompts, k, completions)
    ref_lp = ref.log_softmax(-1)[mask]
    got_lp = got.log_softmax(-1)[mask]
    assert (ref_lp - got_lp).abs().max() < 0.1  # bf16 rounding of a different summation order
    for name in ref_grads:
        scale = ref_grads[name].abs().max()
        assert (ref_grads[name] - got_grads[name]).abs().max() <= 0.05 * scale + 1e-6, name


def test_teacher_cache_reuses_invalidates_and_stays_bounded(setup):
    tok, model, prompts, k, completions = setup
    pad = pad_id(tok)
    repeated = [p for p in prompts for _ in range(k)]
    batch = build_scoring_batch(repeated, repeated, completions, pad)
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    with torch.no_grad(), model.disable_adapter():
        ref = shared_prefix_logits(model, prompts, ids, mask, k, pad)
        cache = PrefixCache(max_bytes=1 << 30)
        cache.bind("model-1")
        first = shared_prefix_logits(model, prompts, ids, mask, k, pad, cache=cache)
        assert (cache.hits, cache.misses) == (0, 3) and len(cache.entries) == 3
        again = shared_prefix_logits(model, prompts, ids, mask, k, pad, cache=cache)
        assert (cache.hits, cache.misses) == (3, 3)
        m = mask.bool()
        assert torch.allclose(ref[m], first[m], atol=1e-5) and torch.allclose(ref[m], again[m], atol=1e-5)

        # New pairs: new entries, the old ones untouched; a different model: everything dropped.
        other = [p[:-2] + p[-1:] for p in prompts]
        shared_prefix_logits(model, other, ids, mask, k, pad, cache=cache)
        assert cache.misses == 6 and len(cache.entries) == 6
        cache.bind("model-2")
        assert len(cache.entries) == 0 and cache.bytes == 0

        # The bound: room for one or two prompts' caches; never exceeded, least recent dropped first.
        probe = PrefixCache(1 << 30)
        probe.kv(model, [max(prompts + other, key=len)[:-1]], pad)
        one = probe.bytes  # the largest entry
        small = PrefixCache(max_bytes=one + one // 2)
        for p in prompts + other:
            small.kv(model, [p[:-1]], pad)
            assert small.bytes <= small.max_bytes
        assert len(small.entries) >= 1 and tuple(other[-1][:-1]) in small.entries
        assert tuple(prompts[0][:-1]) not in small.entries
        tiny = PrefixCache(max_bytes=16)  # smaller than any entry: nothing kept, results still right
        got = shared_prefix_logits(model, prompts, ids, mask, k, pad, cache=tiny)
        assert tiny.bytes == 0 and torch.allclose(ref[m], got[m], atol=1e-5)


def test_generation_with_shared_prefix_matches_plain(setup):
    tok, model, prompts, k, _ = setup
    repeated = [p for p in prompts for _ in range(k)]
    plain = generate_ids(model, tok, repeated, max_new_tokens=8, temperature=0, bf16=False)
    shared = generate_ids(model, tok, prompts, num_samples=k, max_new_tokens=8, temperature=0, bf16=False)
    assert [c.token_ids for c in plain] == [c.token_ids for c in shared]
    torch.manual_seed(3)
    sampled = generate_ids(model, tok, prompts, num_samples=k, max_new_tokens=8, temperature=1.0, bf16=False)
    assert len(sampled) == len(prompts) * k and all(c.token_ids for c in sampled)


def test_length_groups_keep_padding_within_slack():
    from opct.prefix import length_groups

    assert length_groups([]) == []
    assert length_groups([10, 10, 10]) == [[0, 1, 2]]
    groups = length_groups([800, 60, 64, 400, 410, 62], slack=0.1)
    assert groups == [[1, 5, 2], [3, 4], [0]]  # shortest first; every index once
    for group in groups:
        lengths = [[800, 60, 64, 400, 410, 62][i] for i in group]
        assert len(lengths) * max(lengths) <= 1.1 * sum(lengths)


def test_grouped_prefill_equals_one_padded_batch_and_keeps_dtypes(setup):
    from opct.generation import autocast_context
    from opct.prefix import head_kv, length_groups, padded_head_kv

    tok, model, prompts, _, _ = setup
    heads = [p[:-1] for p in prompts] + [prompts[0][:-1] + [5] * 40]  # lengths far apart: several groups
    with torch.no_grad(), autocast_context("cpu", True):
        ref, ref_mask = padded_head_kv(model, heads, pad_id(tok))
        got, got_mask = head_kv(model, heads, pad_id(tok))
    assert len(length_groups([len(h) for h in heads])) > 1
    assert torch.equal(ref_mask, got_mask)
    real = ref_mask.bool()
    for (rk, rv), (gk, gv) in zip(ref, got):
        assert (gk.dtype, gv.dtype) == (rk.dtype, rv.dtype)  # keys fp32 out of RoPE, values bf16
        for row in range(len(heads)):
            assert torch.allclose(rk[row][:, real[row]].float(), gk[row][:, real[row]].float(), atol=2e-2)
            assert torch.allclose(rv[row][:, real[row]].float(), gv[row][:, real[row]].float(), atol=2e-2)


def test_static_decoding_cache_gives_plain_generate_tokens(setup):
    from transformers import StaticCache

    from opct.chat import left_pad
    from opct.prefix import length_groups, prefilled_cache

    tok, model, prompts, _, _ = setup
    lengths = [len(p) for p in prompts]  # mixed and longer than 8: generate_ids prefills them by length
    assert len(length_groups(lengths)) > 1 and max(lengths) > 8
    assert isinstance(prefilled_cache(model, prompts, 1, pad_id(tok), room=9)[2], StaticCache)
    ids, mask = left_pad(prompts, pad_id(tok))
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                             pad_token_id=pad_id(tok), eos_token_id=tok.eos_token_id)
    plain = [row[ids.shape[1]:].tolist() for row in out]
    got = generate_ids(model, tok, prompts, max_new_tokens=8, temperature=0, bf16=False)
    for p, c in zip(plain, got):
        assert c.token_ids == p[: len(c.token_ids)] and all(t == pad_id(tok) for t in p[len(c.token_ids):])
