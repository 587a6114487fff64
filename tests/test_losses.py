"""opct.losses against hand values, naive full-tensor references and Monte Carlo estimates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from opct.losses import (
    act_l2_loss,
    completion_cross_entropy_loss,
    full_reverse_kl_loss,
    generalized_jsd_loss,
    sampled_reverse_kl_loss,
    token_logprobs,
    topk_reverse_kl_loss,
)

# --------------------------------------------------------------------------- naive references


def ref_logprobs(logits, temperature=1.0):
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def ref_reverse_kl(student, teacher, temperature=1.0):
    s, t = ref_logprobs(student, temperature), ref_logprobs(teacher.detach(), temperature)
    return (s.exp() * (s - t)).sum(-1)


def ref_forward_kl(student, teacher, temperature=1.0):
    s, t = ref_logprobs(student, temperature), ref_logprobs(teacher.detach(), temperature)
    return (t.exp() * (t - s)).sum(-1)


def ref_jsd(student, teacher, beta, temperature=1.0):
    p = ref_logprobs(student, temperature).exp()
    q = ref_logprobs(teacher.detach(), temperature).exp()
    m = beta * q + (1 - beta) * p
    return beta * (q * (q / m).log()).sum(-1) + (1 - beta) * (p * (p / m).log()).sum(-1)


def probs_logits(*probs):
    """[1, 1, V] logits whose softmax is ``probs``."""
    return torch.tensor(probs, dtype=torch.float64).log().float().view(1, 1, -1)


def ones_mask(b=1, t=1):
    return torch.ones(b, t)


def random_batch(seed=0, B=3, T=6, V=11, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    student = (scale * torch.randn(B, T, V, generator=g)).requires_grad_()
    teacher = scale * torch.randn(B, T, V, generator=g)
    tokens = torch.randint(0, V, (B, T), generator=g)
    # uneven padding: 6, 4 and 1 counted tokens
    mask = torch.zeros(B, T)
    mask[0, :] = 1
    mask[1, 1:5] = 1
    mask[2, 3] = 1
    return student, teacher, tokens, mask


# --------------------------------------------------------------------------- token_logprobs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_matches_log_softmax_gather_and_its_gradient(temperature):
    g = torch.Generator().manual_seed(1)
    full = (3 * torch.randn(3, 8, 13, generator=g)).requires_grad_()
    logits = full[:, :-1]  # shifted, non-contiguous view
    tokens = torch.randint(0, 13, (3, 7), generator=g)
    upstream = torch.randn(3, 7, generator=g)

    got = token_logprobs(logits, tokens, temperature=temperature, chunk_size=4)  # 21 positions, 6 chunks
    want = ref_logprobs(logits.detach(), temperature).gather(-1, tokens[..., None]).squeeze(-1)
    assert got.dtype == torch.float32 and got.shape == (3, 7)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)

    (grad_got,) = torch.autograd.grad((got * upstream).sum(), full)
    ref_leaf = full.detach().clone().requires_grad_()
    ref = ref_logprobs(ref_leaf[:, :-1], temperature).gather(-1, tokens[..., None]).squeeze(-1)
    (grad_want,) = torch.autograd.grad((ref * upstream).sum(), ref_leaf)
    torch.testing.assert_close(grad_got, grad_want, atol=1e-6, rtol=1e-5)
    assert grad_got[:, -1].abs().max() == 0  # the dropped last position gets no gradient


def test_token_logprobs_bf16_input_is_computed_in_float32():
    g = torch.Generator().manual_seed(2)
    logits = (4 * torch.randn(2, 5, 300, generator=g)).bfloat16().requires_grad_()
    tokens = torch.randint(0, 300, (2, 5), generator=g)
    upstream = torch.randn(2, 5, generator=g)

    got = token_logprobs(logits, tokens, chunk_size=3)
    assert got.dtype == torch.float32
    want = torch.log_softmax(logits.detach().float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # a bf16 log_softmax would be ~1e-2 off

    (grad_got,) = torch.autograd.grad((got * upstream).sum(), logits)
    leaf = logits.detach().clone().requires_grad_()
    ref = torch.log_softmax(leaf.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    (grad_want,) = torch.autograd.grad((ref * upstream).sum(), leaf)
    assert grad_got.dtype == torch.bfloat16
    torch.testing.assert_close(grad_got.float(), grad_want.float(), atol=1e-2, rtol=1e-2)


def test_token_logprobs_without_grad_and_2d_input():
    logits = probs_logits(0.25, 0.75)[0]  # [1, 2] read as [N, V]
    with torch.no_grad():
        out = token_logprobs(logits, torch.tensor([1]))
    assert out.shape == (1,)
    assert abs(out.item() - math.log(0.75)) < 1e-6


# --------------------------------------------------------------------------- identical teacher and student


def test_identical_logits_give_zero_loss_and_exactly_zero_gradient():
    student, _, tokens, mask = random_batch(seed=3)
    teacher = student.detach().clone()

    lp_s = token_logprobs(student, tokens)
    lp_t = token_logprobs(teacher, tokens)
    loss, stats = sampled_reverse_kl_loss(lp_s, lp_t, mask)
    (grad,) = torch.autograd.grad(loss, student)
    assert loss.item() == 0.0 and stats["reverse_kl"] == 0.0
    assert torch.equal(grad, torch.zeros_like(grad))

    for fn in (
        lambda: full_reverse_kl_loss(student, teacher, mask, chunk_size=5),
        lambda: topk_reverse_kl_loss(student, teacher, mask, k=4),
        lambda: generalized_jsd_loss(student, teacher, mask, beta=0.5),
        lambda: generalized_jsd_loss(student, teacher, mask, beta=0.3),
        lambda: generalized_jsd_loss(student, teacher, mask, beta=0.0),
        lambda: generalized_jsd_loss(student, teacher, mask, beta=1.0),
    ):
        loss, _ = fn()
        (grad,) = torch.autograd.grad(loss, student)
        assert abs(loss.item()) < 1e-7
        assert grad.abs().max().item() < 1e-7


# --------------------------------------------------------------------------- hand values


def test_full_reverse_kl_two_token_hand_value():
    student = probs_logits(0.8, 0.2).requires_grad_()
    teacher = probs_logits(0.5, 0.5)
    want = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)
    loss, stats = full_reverse_kl_loss(student, teacher, ones_mask())
    assert abs(loss.item() - want) < 1e-6
    assert abs(stats["reverse_kl"] - want) < 1e-6 and stats["tokens"] == 1.0

    # the same distributions at temperature 2 (logits doubled)
    loss_t, _ = full_reverse_kl_loss(2 * student, 2 * teacher, ones_mask(), temperature=2.0)
    assert abs(loss_t.item() - want) < 1e-6

    # d KL / d z_j = p_j (log(p_j/q_j) - KL)
    (grad,) = torch.autograd.grad(loss, student)
    want_grad = [0.8 * (math.log(1.6) - want), 0.2 * (math.log(0.4) - want)]
    torch.testing.assert_close(grad.view(-1), torch.tensor(want_grad), atol=1e-6, rtol=0)


def test_topk_reverse_kl_hand_value_and_k_equal_vocab():
    student = probs_logits(0.5, 0.3, 0.2).requires_grad_()
    teacher = probs_logits(0.2, 0.2, 0.6)
    # top-2 of the student = tokens 0, 1; renormalised: p~_S = (5/8, 3/8), p~_T = (1/2, 1/2)
    want = 5 / 8 * math.log((5 / 8) / 0.5) + 3 / 8 * math.log((3 / 8) / 0.5)
    loss, stats = topk_reverse_kl_loss(student, teacher, ones_mask(), k=2)
    assert abs(loss.item() - want) < 1e-6 and abs(stats["reverse_kl_topk"] - want) < 1e-6

    full = 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.2) + 0.2 * math.log(0.2 / 0.6)
    loss_all, _ = topk_reverse_kl_loss(student, teacher, ones_mask(), k=100)  # k clamped to V
    assert abs(loss_all.item() - full) < 1e-6


def test_generalized_jsd_hand_values_and_endpoints():
    student = probs_logits(0.8, 0.2)
    teacher = probs_logits(0.5, 0.5)
    p, q = (0.8, 0.2), (0.5, 0.5)

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))

    for beta in (0.5, 0.3):
        m = tuple(beta * qi + (1 - beta) * pi for pi, qi in zip(p, q))
        want = beta * kl(q, m) + (1 - beta) * kl(p, m)
        loss, stats = generalized_jsd_loss(student, teacher, ones_mask(), beta=beta)
        assert abs(loss.item() - want) < 1e-6 and abs(stats["jsd"] - want) < 1e-6

    forward, _ = generalized_jsd_loss(student, teacher, ones_mask(), beta=0.0)
    reverse, _ = generalized_jsd_loss(student, teacher, ones_mask(), beta=1.0)
    assert abs(forward.item() - kl(q, p)) < 1e-6
    assert abs(reverse.item() - kl(p, q)) < 1e-6
    assert abs(kl(q, p) - kl(p, q)) > 0.01  # the two endpoints are distinguishable here

    with pytest.raises(ValueError):
        generalized_jsd_loss(student, teacher, ones_mask(), beta=1.5)


def test_generalized_jsd_endpoints_match_kl_on_random_logits():
    student, teacher, _, mask = random_batch(seed=4)
    for beta, ref in ((0.0, ref_forward_kl), (1.0, ref_reverse_kl)):
        loss, _ = generalized_jsd_loss(student, teacher, mask, beta=beta, temperature=0.9)
        want = (ref(student, teacher, 0.9) * mask).sum() / mask.sum()
        torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
        full, _ = full_reverse_kl_loss(student, teacher, mask, temperature=0.9)
        assert (abs(loss.item() - full.item()) < 1e-6) == (beta == 1.0)


def test_generalized_jsd_half_is_symmetric_and_bounded_by_ln2():
    a, b, _, mask = random_batch(seed=5, scale=6.0)
    ab, _ = generalized_jsd_loss(a, b, mask, beta=0.5)
    ba, _ = generalized_jsd_loss(b, a.detach(), mask, beta=0.5)
    assert abs(ab.item() - ba.item()) < 1e-5

    # near-disjoint supports: close to, but never above, ln 2 (also the per-token bound)
    eps = 1e-6
    loss, _ = generalized_jsd_loss(probs_logits(1 - eps, eps), probs_logits(eps, 1 - eps), ones_mask())
    assert math.log(2) - 1e-4 < loss.item() <= math.log(2) + 1e-7
    per_token = ref_jsd(a.detach(), b, 0.5)
    assert per_token.max().item() <= math.log(2) + 1e-6
    assert ab.item() <= math.log(2)


# --------------------------------------------------------------------------- gradients vs naive autograd


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_divergence_values_and_gradients_match_naive_autograd(dtype):
    student, teacher, _, mask = random_batch(seed=6, T=7)
    leaf = student.detach().to(dtype).requires_grad_()
    shifted, teacher = leaf[:, :-1], teacher.to(dtype)[:, :-1]  # non-contiguous, like logits[:, :-1]
    mask = mask[:, :6]
    upstream_scale = 1.7  # the loss is scaled before backward, like a loss weight
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)

    cases = [
        (
            lambda s, t: full_reverse_kl_loss(s, t, mask, temperature=0.8, chunk_size=3),
            lambda s, t: ref_reverse_kl(s, t, 0.8),
        ),
        (
            lambda s, t: generalized_jsd_loss(s, t, mask, beta=0.5, temperature=0.8),
            lambda s, t: ref_jsd(s, t, 0.5, 0.8),
        ),
        (lambda s, t: generalized_jsd_loss(s, t, mask, beta=0.2), lambda s, t: ref_jsd(s, t, 0.2)),
        (lambda s, t: generalized_jsd_loss(s, t, mask, beta=0.0), lambda s, t: ref_forward_kl(s, t)),
    ]
    for fn, ref in cases:
        loss, _ = fn(shifted, teacher)
        (grad,) = torch.autograd.grad(upstream_scale * loss, leaf)
        ref_leaf = leaf.detach().clone().requires_grad_()
        want = (ref(ref_leaf[:, :-1], teacher) * mask).sum() / mask.sum()
        (want_grad,) = torch.autograd.grad(upstream_scale * want, ref_leaf)
        torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
        assert grad.dtype == dtype
        torch.testing.assert_close(grad.float(), want_grad.float(), **tol)
        assert grad[:, :-1][mask == 0].abs().max() == 0  # uncounted positions get no gradient


def test_teacher_gets_no_gradient():
    student, teacher, tokens, mask = random_batch(seed=7)
    teacher.requires_grad_()
    for loss, _ in (
        full_reverse_kl_loss(student, teacher, mask),
        topk_reverse_kl_loss(student, teacher, mask, k=3),
        generalized_jsd_loss(student, teacher, mask, beta=0.4),
        sampled_reverse_kl_loss(token_logprobs(student, tokens), token_logprobs(teacher, tokens), mask),
    ):
        grads = torch.autograd.grad(loss, [student, teacher], allow_unused=True)
        assert grads[0] is not None and grads[0].abs().sum() > 0
        assert grads[1] is None or grads[1].abs().max() == 0


# --------------------------------------------------------------------------- Monte Carlo: sampled estimator


def test_sampled_reverse_kl_is_unbiased_for_value_and_gradient():
    g = torch.Generator().manual_seed(8)
    V, n = 5, 20_000
    z = torch.tensor([1.0, -0.5, 0.3, 0.8, -1.2], requires_grad=True)
    teacher = torch.tensor([0.2, 0.4, -0.9, 1.1, 0.0])
    samples = torch.multinomial(torch.softmax(z.detach(), -1), n, replacement=True, generator=g).view(1, n)

    student_logits = z.expand(1, n, V)  # every sample shares the same student logits
    lp_s = token_logprobs(student_logits, samples, chunk_size=4096)
    lp_t = token_logprobs(teacher.expand(1, n, V), samples, chunk_size=4096)
    loss, stats = sampled_reverse_kl_loss(lp_s, lp_t, torch.ones(1, n))
    (grad_mc,) = torch.autograd.grad(loss, z)

    exact, _ = full_reverse_kl_loss(z.view(1, 1, V), teacher.view(1, 1, V), ones_mask())
    (grad_exact,) = torch.autograd.grad(exact, z)
    p, q = torch.softmax(z.detach(), -1), torch.softmax(teacher, -1)
    hand = (p * (p / q).log()).sum().item()
    assert abs(exact.item() - hand) < 1e-6
    assert hand > 0.2  # far enough from 0 that a broken estimator would show

    assert stats["tokens"] == n
    assert abs(stats["reverse_kl"] - hand) < 0.02
    torch.testing.assert_close(grad_mc, grad_exact, atol=0.02, rtol=0)
    # and the surrogate's gradient is not the (zero-mean) gradient of mean log p_S alone
    assert grad_exact.abs().max() > 0.1


def test_sampled_loss_hand_value_with_mask():
    s = torch.tensor([[-0.1, -2.0, -0.5]], requires_grad=True)
    t = torch.tensor([[-0.3, -1.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the last (huge-k) position must not count
    loss, stats = sampled_reverse_kl_loss(s, t, mask)
    k = [0.2, -1.0]
    assert abs(loss.item() - (k[0] * -0.1 + k[1] * -2.0) / 2) < 1e-6
    assert abs(stats["reverse_kl"] - sum(k) / 2) < 1e-6
    (grad,) = torch.autograd.grad(loss, s)
    torch.testing.assert_close(grad, torch.tensor([[0.1, -0.5, 0.0]]))  # d/ds_t = k_t * mask_t / n


# --------------------------------------------------------------------------- normalisation under accumulation


def _all_losses(student, teacher, tokens, mask, num_tokens):
    lp_s = token_logprobs(student, tokens)
    lp_t = token_logprobs(teacher, tokens)
    return {
        "sampled": sampled_reverse_kl_loss(lp_s, lp_t, mask, num_tokens)[0],
        "full": full_reverse_kl_loss(student, teacher, mask, num_tokens)[0],
        "topk": topk_reverse_kl_loss(student, teacher, mask, k=3, num_tokens=num_tokens)[0],
        "jsd": generalized_jsd_loss(student, teacher, mask, 0.5, num_tokens)[0],
        "ce": completion_cross_entropy_loss(student, tokens, mask, num_tokens)[0],
    }


def test_gradient_accumulation_normalises_by_the_whole_window():
    leaf, teacher, tokens, mask = random_batch(seed=9)
    total = mask.sum()  # 11 tokens: 10 in micro-batch [0:2], 1 in [2:3]
    full = _all_losses(leaf, teacher, tokens, mask, None)
    parts = [
        _all_losses(leaf[sl], teacher[sl], tokens[sl], mask[sl], total) for sl in (slice(0, 2), slice(2, 3))
    ]
    parts_float = _all_losses(leaf[:2], teacher[:2], tokens[:2], mask[:2], float(total))
    per_micro = [
        _all_losses(leaf[sl], teacher[sl], tokens[sl], mask[sl], None) for sl in (slice(0, 2), slice(2, 3))
    ]

    for name, whole in full.items():
        summed = parts[0][name] + parts[1][name]
        torch.testing.assert_close(summed, whole, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(parts_float[name], parts[0][name])
        (g_whole,) = torch.autograd.grad(whole, leaf)
        (g_summed,) = torch.autograd.grad(summed, leaf)
        torch.testing.assert_close(g_summed, g_whole, atol=1e-6, rtol=1e-5)
        # per-micro-batch means would weight the 1-token micro-batch like the 10-token one
        wrong = per_micro[0][name] + per_micro[1][name]
        assert abs(wrong.item() - whole.item()) > 1e-3, name


def test_loss_is_a_per_token_mean_not_a_per_sequence_mean():
    student, teacher, _, mask = random_batch(seed=10)
    per_token = ref_reverse_kl(student.detach(), teacher)
    loss, stats = full_reverse_kl_loss(student, teacher, mask)
    want = (per_token * mask).sum() / mask.sum()
    per_sequence = ((per_token * mask).sum(1) / mask.sum(1)).mean()
    assert abs(loss.item() - want.item()) < 1e-6
    assert abs(per_sequence.item() - want.item()) > 1e-3
    assert stats["tokens"] == 11.0 and abs(stats["reverse_kl"] - want.item()) < 1e-6
    # an explicit window size rescales the loss but not the logged per-token mean
    loss_w, stats_w = full_reverse_kl_loss(student, teacher, mask, num_tokens=torch.tensor(22.0))
    assert abs(loss_w.item() - want.item() / 2) < 1e-6 and stats_w["reverse_kl"] == stats["reverse_kl"]


def test_empty_mask_gives_zero_not_nan():
    student, teacher, tokens, _ = random_batch(seed=11)
    mask = torch.zeros(3, 6)
    for name, loss in _all_losses(student, teacher, tokens, mask, None).items():
        assert loss.item() == 0.0, name
        (grad,) = torch.autograd.grad(loss, student)
        assert grad.abs().max() == 0, name


# --------------------------------------------------------------------------- cross-entropy


def test_completion_cross_entropy_matches_torch_cross_entropy():
    student, _, tokens, mask = random_batch(seed=12)
    labels = tokens.masked_fill(mask == 0, -100)  # ignored labels at uncounted positions
    loss, stats = completion_cross_entropy_loss(student, labels, mask)
    keep = mask.bool()
    want = F.cross_entropy(student[keep], labels[keep], reduction="sum") / keep.sum()
    torch.testing.assert_close(loss, want, atol=1e-6, rtol=1e-6)
    assert abs(stats["ce"] - want.item()) < 1e-5 and stats["tokens"] == 11.0
    (grad,) = torch.autograd.grad(loss, student)
    (want_grad,) = torch.autograd.grad(want, student)
    torch.testing.assert_close(grad, want_grad, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- ACT


def test_act_l2_zero_when_equal_and_gradient_only_to_wrapped():
    g = torch.Generator().manual_seed(13)
    wrapped = [torch.randn(2, 4, 8, generator=g).requires_grad_() for _ in range(3)]
    clean = [w.detach().clone().requires_grad_() for w in wrapped]
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    loss, stats = act_l2_loss(wrapped, clean, mask)
    assert loss.item() == 0.0 and stats["act_l2"] == 0.0

    clean = [(c.detach() + 0.5).requires_grad_() for c in clean]
    loss, stats = act_l2_loss(wrapped, clean, mask)
    assert abs(loss.item() - 0.25) < 1e-6  # every diff is 0.5: mean of 0.25 over dims, positions, layers
    assert abs(stats["act_l2"] - 0.25) < 1e-6 and stats["positions"] == 6.0 and stats["layers"] == 3.0
    loss.backward()
    assert all(c.grad is None for c in clean)
    for w in wrapped:
        assert w.grad is not None
        assert w.grad[0, 3].abs().max() == 0 and w.grad[1, 0].abs().max() == 0  # unmasked positions
        # d/dh_w of sum ||h_w - h_c||^2 / D / (L * P) = 2 (h_w - h_c) / (D * L * P)
        torch.testing.assert_close(w.grad[0, 0], torch.full((8,), 2 * -0.5 / (8 * 3 * 6)))


def test_act_l2_hand_value_and_window_normaliser():
    wrapped = [torch.tensor([[[1.0, 2.0]]], requires_grad=True)]
    clean = [torch.tensor([[[0.0, 4.0]]])]
    loss, stats = act_l2_loss(wrapped, clean, torch.ones(1, 1))
    assert abs(loss.item() - (1.0 + 4.0) / 2) < 1e-6 and abs(stats["act_l2"] - 2.5) < 1e-6
    loss, stats = act_l2_loss(wrapped, clean, torch.ones(1, 1), num_positions=5)
    assert abs(loss.item() - 0.5) < 1e-6 and abs(stats["act_l2"] - 2.5) < 1e-6
    with pytest.raises(ValueError):
        act_l2_loss(wrapped, [], torch.ones(1, 1))


# --------------------------------------------------------------------------- letter KL
def test_letter_reverse_kl_spreads_the_letter_kl_over_each_response():
    from opct.losses import letter_reverse_kl_loss

    s_letters = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    t_letters = torch.tensor([[0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    loss, stats = letter_reverse_kl_loss(logprobs, mask, s_letters, t_letters, num_tokens=5)
    p = s_letters.softmax(-1)
    d = (p * (s_letters.log_softmax(-1) - t_letters.log_softmax(-1))).sum(-1)  # [KL > 0, 0]
    assert d[0] > 0.1 and d[1] == 0
    assert stats["letter_kl"] == pytest.approx(float(d.mean()))
    # loss = sum_t (d_i / T_i) * log p(y_t) / 5; the second response has no KL and no gradient.
    assert loss.item() == pytest.approx(float(d[0] / 3 * (-6.0) / 5))
    loss.backward()
    expected = torch.tensor([[d[0] / 3 / 5] * 3, [0.0, 0.0, 0.0]])
    assert torch.allclose(logprobs.grad, expected)
    with pytest.raises(ValueError):
        letter_reverse_kl_loss(logprobs, mask, s_letters[:1], t_letters, num_tokens=5)
