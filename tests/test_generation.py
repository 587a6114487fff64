"""Generation helpers: the merged sampling copy follows the LoRA student."""

import pytest
import torch
from conftest import build_tiny_model, build_tiny_tokenizer, tiny_trained_lora

from opct.generation import SamplingCopy
from opct.kernels import _onednn_usable as onednn_usable
from opct.models import add_lora


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_sampling_copy_tracks_student(onednn, monkeypatch):
    monkeypatch.setenv("OPCT_ONEDNN", onednn)  # "1": merged matrices in oneDNN's packed layout
    tok = build_tiny_tokenizer()
    student = tiny_trained_lora(tok)
    copy = SamplingCopy(student, torch.float32)
    assert copy.packs == (onednn == "1" and onednn_usable())
    x = torch.tensor([[1, 5, 9, 22, 31]])
    assert torch.allclose(student(x).logits, copy.model(x).logits, atol=1e-5)
    with torch.no_grad():
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)  # a training step
    assert not torch.allclose(student(x).logits, copy.model(x).logits, atol=1e-5)
    copy.sync()
    assert torch.allclose(student(x).logits, copy.model(x).logits, atol=1e-5)
    with student.disable_adapter():  # the student's own base weights are untouched by the copy
        assert not torch.allclose(student(x).logits, copy.model(x).logits, atol=1e-5)


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_sampling_copy_frees_its_merged_matrices_between_samplings(onednn, monkeypatch):
    monkeypatch.setenv("OPCT_ONEDNN", onednn)
    tok = build_tiny_tokenizer()
    student = tiny_trained_lora(tok)
    copy = SamplingCopy(student, torch.float32)
    copy.release()
    adapted = [target.weight for _, target in copy.pairs]
    assert adapted and copy.buffer is None and all(w.stride() == (0, 0) for w in adapted)
    assert all(getattr(target, "packed", None) is None for _, target in copy.pairs)
    x = torch.tensor([[1, 5, 9, 22, 31]])
    with torch.no_grad():
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)  # a training step while the copy is freed
    with copy.merged() as model:
        assert torch.allclose(student(x).logits, model(x).logits, atol=1e-5)
    assert copy.buffer is None and all(target.weight.stride() == (0, 0) for _, target in copy.pairs)
    assert all(getattr(target, "packed", None) is None for _, target in copy.pairs)


def test_sampling_copy_is_one_bf16_copy_with_tied_weights_kept():
    tok = build_tiny_tokenizer()
    base = build_tiny_model(tok)
    base.config.tie_word_embeddings = True
    base.tie_weights()
    student = add_lora(base, r=8, alpha=16)
    copy = SamplingCopy(student, torch.bfloat16)
    params = dict(copy.model.named_parameters(remove_duplicate=False))
    assert all(p.dtype == torch.bfloat16 and not p.is_meta for p in params.values())
    assert params["lm_head.weight"].data_ptr() == params["model.embed_tokens.weight"].data_ptr()
    assert not any(b.is_meta for b in copy.model.buffers())
    x = torch.tensor([[1, 5, 9, 22, 31]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = student(x).logits.float()
    assert torch.allclose(ref, copy.model(x).logits.float(), atol=0.1)


def test_inverse_cdf_sampler_draws_from_the_softmax():
    from opct.generation import InverseCDFSampler

    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])
    sampler = InverseCDFSampler(temperature=0.7)
    counts = torch.zeros(5)
    n = 20000
    for _ in range(n):
        out = sampler(None, logits)
        assert (out == 0).sum() == 1 and torch.isinf(out).sum() == 4
        counts += (out[0] == 0).float()
    expected = torch.softmax(logits[0] / 0.7, -1)
    assert counts[4] == 0  # a banned token (-inf) is never drawn
    torch.testing.assert_close(counts / n, expected, atol=0.012, rtol=0)


def test_inverse_cdf_sampler_stays_in_the_nucleus():
    from opct.generation import InverseCDFSampler

    torch.manual_seed(0)
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    sampler = InverseCDFSampler(temperature=1.0, top_p=0.75)  # nucleus: tokens 0 and 2 (mass 0.8)
    drawn = torch.stack([sampler(None, probs.log()).argmax(-1) for _ in range(4000)]).flatten()
    assert set(drawn.tolist()) == {0, 2}
    assert abs((drawn == 0).float().mean().item() - 0.5 / 0.8) < 0.03


def test_a_frozen_model_has_its_weights_cast_once_per_call(monkeypatch):
    """Autocast re-casts frozen fp32 weights at every decoding step unless they require grad; generate
    sets the flags for the call, gives the same tokens, and restores them."""
    monkeypatch.setenv("OPCT_BF16", "1")  # bf16 even where it is not native
    from torch.profiler import ProfilerActivity, profile

    from opct.generation import generate_ids, weights_cast_once

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(tok).requires_grad_(False)
    prompts = [tok("hello there, how are you")["input_ids"]]

    weights = [list(p.shape) for p in model.parameters() if p.dim() == 2]

    def casts(cast_once: bool) -> tuple[int, list[int]]:
        """(casts of weight-shaped tensors, tokens) over 12 greedy decoding steps."""
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            with torch.autocast("cpu", dtype=torch.bfloat16), weights_cast_once(model, cast_once):
                out = model.generate(input_ids=torch.tensor(prompts), max_new_tokens=12, min_new_tokens=12,
                                     do_sample=False, pad_token_id=0)
        events = prof.key_averages(group_by_input_shape=True)
        return (sum(e.count for e in events if e.key == "aten::_to_copy" and e.input_shapes
                    and e.input_shapes[0] in weights), out[0].tolist())

    every_step, tokens = casts(False)
    once, same = casts(True)
    assert same == tokens and 0 < once and once * 6 <= every_step, (once, every_step)
    assert not any(p.requires_grad for p in model.parameters())  # restored
    assert generate_ids(model, tok, prompts, max_new_tokens=4)[0].token_ids == tokens[len(prompts[0]):][:4]


def test_several_samples_share_one_prefill_per_prompt():
    from opct.generation import generate

    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok)
    prompts = [[{"role": "user", "content": f"Tell me about the number {i}, and why it matters so much."}]
               for i in (3, 14, 159)]
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        greedy = generate(model, tok, prompts, max_new_tokens=6, num_samples=3, batch_size=4, bf16=False)
    finally:
        hook.remove()
    single = generate(model, tok, prompts, max_new_tokens=6, bf16=False)
    # In input order, three per prompt; greedy samples from the shared prefill equal the plain greedy answer.
    assert [[c.token_ids for c in cs] for cs in greedy] == [[s.token_ids] * 3 for (s,) in single]
    # One prompt per call (4 rows // 3 samples), and the prompt runs once per call, not once per sample.
    prefills = [shape for shape in seen if shape[1] > 1]
    assert len(prefills) == 3 and all(shape[0] == 1 for shape in prefills)


def test_a_repeated_prompt_is_decoded_once_when_greedy():
    from opct.generation import generate

    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok)
    a, b = ([{"role": "user", "content": text}] for text in ("Name a colour.", "Count to three, slowly please."))

    def prefilled_rows(prompts, **kw):  # rows of the forwards over more than one position: the prefills
        shapes = []
        hook = model.register_forward_pre_hook(lambda m, args, k: shapes.append(k["input_ids"].shape), with_kwargs=True)
        try:
            return generate(model, tok, prompts, max_new_tokens=5, bf16=False, **kw), sum(
                rows for rows, width in shapes if width > 1)
        finally:
            hook.remove()

    outs, rows = prefilled_rows([a, b, a, a])
    assert rows == 2  # two distinct prompts prefilled, not four
    alone = generate(model, tok, [b, a], max_new_tokens=5, bf16=False)
    assert [o[0].token_ids for o in outs] == [alone[1][0].token_ids, alone[0][0].token_ids] + [alone[1][0].token_ids] * 2
    assert prefilled_rows([a, a], temperature=1.0)[1] == 2  # sampled: each copy draws its own answer
