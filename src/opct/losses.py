"""Token-level losses for consistency training (OPCT, BCT, ACT): pure functions on tensors.

Conventions shared by every function here:

* logits are ``[B, T, V]`` and already shifted: ``logits[:, t]`` predicts ``tokens[:, t]``;
* ``mask`` is ``[B, T]`` (1 = a completion token that counts, 0 = prompt or padding);
* ``num_tokens`` is the normaliser. Pass the token count of the whole gradient-accumulation
  window, so that summing the micro-batch losses gives (sum of all per-token losses) / (all
  tokens). ``None`` means ``mask.sum()`` of this call, clamped to >= 1. Losses are always
  ``(per_token * mask).sum() / num_tokens``: never a per-sequence or per-micro-batch mean;
* the teacher (or clean run) is a constant: no gradient ever reaches it;
* every loss returns ``(loss, stats)``; ``stats`` holds detached Python floats for logging,
  averaged over this call's own masked tokens (whatever ``num_tokens`` is).

Everything is computed in float32 whatever the input dtype. The full-vocabulary functions
work in chunks of positions and recompute softmaxes in the backward pass, so that no
``[B*T, V]`` float32 tensor (V = 152k for Qwen) is ever held, in the forward or the backward.

One concern over 400 lines: every loss is a pure function here, with its chunked-memory variants.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "token_logprobs",
    "sampled_reverse_kl_loss",
    "letter_reverse_kl_loss",
    "full_reverse_kl_loss",
    "topk_reverse_kl_loss",
    "generalized_jsd_loss",
    "completion_cross_entropy_loss",
    "act_l2_loss",
]

Stats = dict[str, float]
# The divergence stat each loss below returns, by name: what trainers log and summaries show
DIVERGENCE_STATS = ("reverse_kl", "reverse_kl_topk", "jsd", "letter_kl", "act_l2")

# Float32 elements per chunk ([positions, V]): about 4 MB, so a chunk's temporaries stay in cache
# and never take the allocator's mmap path. Measured on the CPU at V = 152k, 256 positions: 3x
# faster than chunks of 256-1024 positions (0.15-0.6 GB), 1.5x faster than 16 MB chunks.
_CHUNK_ELEMENTS = 1 << 20


def _auto_chunk(vocab: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, vocab))


# --------------------------------------------------------------------------- helpers


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return temperature


def _check_chunk(chunk_size: int) -> int:
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return chunk_size


def _check_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> None:
    if student_logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(student_logits.shape)}")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} "
            f"vs {tuple(teacher_logits.shape)}"
        )
    if mask.shape != student_logits.shape[:2]:
        raise ValueError(f"mask must be {tuple(student_logits.shape[:2])}, got {tuple(mask.shape)}")


def _weights(mask: torch.Tensor) -> torch.Tensor:
    return mask.to(torch.float32)


def _normaliser(mask: torch.Tensor, num_tokens: float | torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """The denominator as a float32 scalar tensor on ``device`` (never part of the graph)."""
    if num_tokens is None:
        return _weights(mask).sum().clamp(min=1.0).to(device)
    if isinstance(num_tokens, torch.Tensor):
        return num_tokens.detach().to(device=device, dtype=torch.float32).reshape(())
    if not float(num_tokens) > 0.0:
        raise ValueError(f"num_tokens must be > 0, got {num_tokens}")
    return torch.tensor(float(num_tokens), dtype=torch.float32, device=device)


def _masked_sum(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(per_token * mask); masked-out positions contribute exactly 0 even if inf/nan."""
    w = _weights(mask)
    return torch.where(w != 0, per_token * w, torch.zeros_like(per_token)).sum()


def _masked_mean_value(per_token_sum: torch.Tensor, mask: torch.Tensor) -> float:
    """A stat: ``per_token_sum`` over this call's own masked-token count (0 tokens -> 0.0)."""
    return float(per_token_sum.detach() / _weights(mask).sum().clamp(min=1.0))


def _log_softmax_rows(x: torch.Tensor, temperature: float) -> torch.Tensor:
    x = x.float()
    if temperature != 1.0:
        x = x / temperature
    return torch.log_softmax(x, dim=-1)


def _xlogy_like(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``p * d`` with 0 where ``p == 0`` (so 0 * -inf and 0 * nan give 0)."""
    return torch.where(p > 0, p * d, torch.zeros_like(p))


# --------------------------------------------------------------------------- token log-probs


class _TokenLogprobs(torch.autograd.Function):
    """log_softmax(logits / temperature) gathered at ``tokens``, chunked over positions.

    Forward keeps nothing but its inputs; backward recomputes each chunk's softmax and writes its
    gradient straight into one preallocated buffer.
    """

    @staticmethod
    def forward(ctx, logits, tokens, temperature, chunk_size):
        B, T, _ = logits.shape
        n = B * T
        flat_tokens = tokens.reshape(-1)
        out = torch.empty(n, dtype=torch.float32, device=logits.device)
        for start in range(0, n, chunk_size):
            flat = torch.arange(start, min(start + chunk_size, n), device=logits.device)
            x = logits[flat // T, flat % T].float()  # [c, V] copy; works for non-contiguous logits
            if temperature != 1.0:
                x = x / temperature
            out[flat] = torch.log_softmax(x, dim=-1).gather(-1, flat_tokens[flat, None]).squeeze(-1)
        ctx.save_for_backward(logits, flat_tokens)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        return out.view(B, T)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        logits, flat_tokens = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        B, T, V = logits.shape
        n = B * T
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        g_flat = grad_out.reshape(-1).float()
        grad = torch.empty((B, T, V), dtype=logits.dtype, device=logits.device)
        for start in range(0, n, chunk_size):
            flat = torch.arange(start, min(start + chunk_size, n), device=logits.device)
            b, t = flat // T, flat % T
            x = logits[b, t].float()
            if temperature != 1.0:
                x = x / temperature
            g = g_flat[flat, None]
            # d logp(y) / d x = onehot(y) - softmax(x); then the 1/temperature of x = logits / T.
            gx = torch.softmax(x, dim=-1).mul_(-g)
            gx.scatter_add_(-1, flat_tokens[flat, None], g)
            if temperature != 1.0:
                gx.div_(temperature)
            grad[b, t] = gx.to(grad.dtype)
        return grad, None, None, None


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, chunk_size: int | None = None
) -> torch.Tensor:
    """Log-probabilities ``log_softmax(logits / temperature)[..., tokens]`` as float32 ``[B, T]``.

    ``logits`` is ``[B, T, V]`` (``[N, V]`` is treated as ``B = 1``), any float dtype, contiguous
    or not (e.g. ``logits[:, :-1]``); ``tokens`` is ``[B, T]``. Positions are processed
    ``chunk_size`` at a time (default: about 16 MB of float32), so at most ``[chunk_size, V]``
    float32 is alive at once, in the forward and in the backward. Differentiable with respect to
    ``logits`` (first order only).
    """
    temperature = _check_temperature(temperature)
    chunk_size = _check_chunk(chunk_size or _auto_chunk(logits.shape[-1]))
    squeeze = logits.dim() == 2
    if squeeze:
        logits, tokens = logits.unsqueeze(0), tokens.unsqueeze(0)
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    if tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens must be {tuple(logits.shape[:2])}, got {tuple(tokens.shape)}")
    out = _TokenLogprobs.apply(logits, tokens.long(), temperature, chunk_size)
    return out.squeeze(0) if squeeze else out


# --------------------------------------------------------------------------- full-vocabulary divergences


def _mixture_gaps(s: torch.Tensor, t: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p_S - log m, log p_T - log m)`` for ``m = beta p_T + (1 - beta) p_S``.

    This is the two-term logsumexp ``log m = logaddexp(t + log beta, s + log(1 - beta))``
    written relative to the larger term with log1p/expm1: it never overflows, and it is exactly
    0 where ``p_S == p_T`` (so identical distributions give exactly zero loss and gradient).
    """
    d = t - s
    up = d > 0
    d_neg = torch.where(up, torch.zeros_like(d), d)  # <= 0: expm1 stays in (-1, 0]
    d_pos = torch.where(up, d, torch.zeros_like(d))  # >= 0
    s_gap_low = -torch.log1p(beta * torch.expm1(d_neg))  # valid where t <= s
    t_gap_high = -torch.log1p((1.0 - beta) * torch.expm1(-d_pos))  # valid where t > s
    s_gap = torch.where(up, t_gap_high - d, s_gap_low)
    t_gap = torch.where(up, t_gap_high, s_gap_low + d)
    return s_gap, t_gap


def _divergence(s: torch.Tensor, t: torch.Tensor, kind: str, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row divergence D(p_S, p_T) from float32 log-probs ``s``, ``t`` ([c, V]).

    Returns ``(value [c], r [c, V])`` with ``r = p_S * dD/dp_S`` (up to terms constant in v,
    which the softmax Jacobian cancels): the logit gradient is ``(r - p_S * r.sum()) / temperature``.
    """
    p = s.exp()
    if kind == "reverse":  # KL(p_S || p_T)
        r = _xlogy_like(p, s - t)
        return r.sum(-1), r
    q = t.exp()
    if kind == "forward":  # KL(p_T || p_S); dD/dp_S = -p_T / p_S
        return _xlogy_like(q, t - s).sum(-1), -q
    # generalized JSD; dD/dp_S = (1 - beta) (log p_S - log m), the other terms cancel.
    s_gap, t_gap = _mixture_gaps(s, t, beta)
    r = (1.0 - beta) * _xlogy_like(p, s_gap)
    return beta * _xlogy_like(q, t_gap).sum(-1) + r.sum(-1), r


class _RowDivergence(torch.autograd.Function):
    """Per-position divergence at the positions ``(b_idx, t_idx)``, chunked, teacher constant."""

    @staticmethod
    def forward(ctx, student, teacher, b_idx, t_idx, kind, beta, temperature, chunk_size):
        m = b_idx.numel()
        out = torch.empty(m, dtype=torch.float32, device=student.device)
        for start in range(0, m, chunk_size):  # autograd is off inside Function.forward
            b, t = b_idx[start : start + chunk_size], t_idx[start : start + chunk_size]
            s = _log_softmax_rows(student[b, t], temperature)
            q = _log_softmax_rows(teacher[b, t], temperature)
            out[start : start + chunk_size] = _divergence(s, q, kind, beta)[0]
        ctx.save_for_backward(student, teacher, b_idx, t_idx)
        ctx.args = (kind, beta, temperature, chunk_size)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        student, teacher, b_idx, t_idx = ctx.saved_tensors
        none = (None,) * 7
        if not ctx.needs_input_grad[0]:
            return (None, *none)
        kind, beta, temperature, chunk_size = ctx.args
        grad = torch.zeros(student.shape, dtype=student.dtype, device=student.device)
        g_all = grad_out.float()
        for start in range(0, b_idx.numel(), chunk_size):
            b, t = b_idx[start : start + chunk_size], t_idx[start : start + chunk_size]
            s = _log_softmax_rows(student[b, t], temperature)
            q = _log_softmax_rows(teacher[b, t], temperature)
            _, r = _divergence(s, q, kind, beta)
            # Softmax Jacobian: dD/dx_j = p_j (h_j - sum_v p_v h_v) with r = p * h.
            gx = r - s.exp() * r.sum(-1, keepdim=True)
            gx.mul_(g_all[start : start + chunk_size, None] / temperature)
            grad[b, t] = gx.to(grad.dtype)
        return (grad, *none)


def _full_divergence_loss(student_logits, teacher_logits, mask, num_tokens, temperature, chunk_size, kind, beta):
    """Masked sum of a per-position full-vocabulary divergence / num_tokens, and that sum."""
    _check_pair(student_logits, teacher_logits, mask)
    temperature = _check_temperature(temperature)
    chunk_size = _check_chunk(chunk_size or _auto_chunk(student_logits.shape[-1]))
    b_idx, t_idx = (mask != 0).nonzero(as_tuple=True)  # only counted positions are computed
    per_pos = _RowDivergence.apply(
        student_logits, teacher_logits.detach(), b_idx, t_idx, kind, beta, temperature, chunk_size
    )
    weighted = (per_pos * _weights(mask)[b_idx, t_idx]).sum()
    return weighted / _normaliser(mask, num_tokens, weighted.device), weighted


def full_reverse_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    num_tokens: float | torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Exact reverse KL: ``sum_t mask_t * KL(p_S(.|t) || p_T(.|t)) / num_tokens``.

    ``KL = sum_v p_S(v) (log p_S(v) - log p_T(v))`` over the whole vocabulary, with both
    distributions at ``temperature``. Only masked positions are computed, ``chunk_size`` at a
    time; the teacher is a constant. stats: ``reverse_kl`` (mean per-token KL), ``tokens``.
    """
    loss, total = _full_divergence_loss(
        student_logits, teacher_logits, mask, num_tokens, temperature, chunk_size, "reverse", 0.0
    )
    return loss, {"reverse_kl": _masked_mean_value(total, mask), "tokens": float(_weights(mask).sum())}


def generalized_jsd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    num_tokens: float | torch.Tensor | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, Stats]:
    """Generalized Jensen-Shannon divergence of GKD (Agarwal et al., 2024), per token.

    For ``0 < beta < 1``, with the mixture ``m = beta p_T + (1 - beta) p_S``::

        JSD_beta = beta KL(p_T || m) + (1 - beta) KL(p_S || m)      (0 <= JSD_beta <= ln 2 at 0.5)

    The endpoints follow TRL's GKD convention (the formula itself tends to 0 there):
    ``beta = 0`` gives the forward ``KL(p_T || p_S)``, ``beta = 1`` the reverse
    ``KL(p_S || p_T)``. The mixture is computed in log space (see ``_mixture_gaps``).
    Masked sum / num_tokens; teacher constant. stats: ``jsd`` (mean per token), ``tokens``.
    """
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    kind = "forward" if beta == 0.0 else "reverse" if beta == 1.0 else "jsd"
    loss, total = _full_divergence_loss(
        student_logits, teacher_logits, mask, num_tokens, temperature, None, kind, beta
    )
    return loss, {"jsd": _masked_mean_value(total, mask), "tokens": float(_weights(mask).sum())}


def topk_reverse_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    k: int = 64,
    num_tokens: float | torch.Tensor | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, Stats]:
    """Reverse KL restricted to the student's top-k tokens at each position.

    With ``K_t`` the student's ``k`` most likely tokens at position t (chosen without
    gradient), both distributions are renormalised over ``K_t``:
    ``p~(v) = p(v) / sum_{u in K_t} p(u)``, and the loss is
    ``sum_t mask_t * sum_{v in K_t} p~_S(v) (log p~_S(v) - log p~_T(v)) / num_tokens``.
    It is 0 when the distributions agree on ``K_t``, equals the exact reverse KL when
    ``k >= V``, and otherwise ignores the tail mass (a biased, cheap approximation).
    stats: ``reverse_kl_topk`` (mean per token), ``tokens``.
    """
    _check_pair(student_logits, teacher_logits, mask)
    temperature = _check_temperature(temperature)
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(int(k), student_logits.shape[-1])
    with torch.no_grad():
        idx = student_logits.topk(k, dim=-1).indices  # same order as logits / temperature
    s = _log_softmax_rows(student_logits.gather(-1, idx), temperature)  # [B, T, k]
    q = _log_softmax_rows(teacher_logits.detach().gather(-1, idx), temperature)
    per_token = (s.exp() * (s - q)).sum(-1)
    total = _masked_sum(per_token, mask)
    loss = total / _normaliser(mask, num_tokens, total.device)
    return loss, {"reverse_kl_topk": _masked_mean_value(total, mask), "tokens": float(_weights(mask).sum())}


# --------------------------------------------------------------------------- sampled (on-policy) reverse KL


def sampled_reverse_kl_loss(
    student_logprobs: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    mask: torch.Tensor,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Policy-gradient surrogate of the reverse KL on tokens sampled from the student.

    Inputs are ``[B, T]`` log-probs of the sampled tokens ``y_t ~ p_S`` (e.g. from
    ``token_logprobs``). Per token ``k_t = log p_S(y_t) - log p_T(y_t)`` and the advantage
    ``A_t = -k_t`` (detached), so::

        loss = sum_t mask_t * (-A_t) * log p_S(y_t) / num_tokens

    Its value is not the KL, but its gradient is, in expectation over ``y ~ p_S``, the
    gradient of the exact reverse KL (the score-function term ``E[grad log p_S] = 0``).
    The teacher is a constant. stats: ``reverse_kl`` (mean ``k_t``, the unbiased k1
    estimate of the KL), ``tokens``.
    """
    if student_logprobs.shape != teacher_logprobs.shape or student_logprobs.shape != mask.shape:
        raise ValueError(
            f"shapes differ: student {tuple(student_logprobs.shape)}, teacher "
            f"{tuple(teacher_logprobs.shape)}, mask {tuple(mask.shape)}"
        )
    s = student_logprobs.float()
    k = (s - teacher_logprobs.detach().float()).detach()
    advantage = -k
    total = _masked_sum(-advantage * s, mask)
    loss = total / _normaliser(mask, num_tokens, total.device)
    stats = {"reverse_kl": _masked_mean_value(_masked_sum(k, mask), mask), "tokens": float(_weights(mask).sum())}
    return loss, stats


def letter_reverse_kl_loss(
    student_logprobs: torch.Tensor,
    mask: torch.Tensor,
    student_letter_logits: torch.Tensor,
    teacher_letter_logits: torch.Tensor,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """The reference code's answer-letter ("two-phase") KL for multiple-choice sycophancy.

    Per sampled response i: ``d_i = KL(p_S || p_T)`` over the option letters only, where
    ``p_S`` / ``p_T`` are the softmaxes of ``[B, L]`` letter logits read after the response and an
    appended answer prefix, under the wrapped (student) and the clean (teacher) prompt. ``d_i`` is
    spread evenly over the response's tokens as a per-token advantage ``A_t = -d_i / T_i``, in the
    policy-gradient surrogate::

        loss = sum_i sum_t mask_it * (-A_t) * log p_S(y_it) / num_tokens

    ``student_logprobs`` are the ``[B, T]`` log-probs of the sampled tokens. Both letter
    distributions are constants here (the gradient reaches the student through its response
    tokens only, as in the reference). stats: ``letter_kl`` (mean ``d_i``), ``tokens``.
    """
    if student_logprobs.shape != mask.shape:
        raise ValueError(f"shapes differ: student {tuple(student_logprobs.shape)}, mask {tuple(mask.shape)}")
    if student_letter_logits.shape != teacher_letter_logits.shape or student_letter_logits.shape[0] != mask.shape[0]:
        raise ValueError(f"letter logits must both be [{mask.shape[0]}, L], got {tuple(student_letter_logits.shape)} "
                         f"and {tuple(teacher_letter_logits.shape)}")
    with torch.no_grad():
        s = torch.log_softmax(student_letter_logits.float(), -1)
        t = torch.log_softmax(teacher_letter_logits.float(), -1)
        d = _xlogy_like(s.exp(), s - t).sum(-1)  # [B]
        lengths = _weights(mask).sum(-1).clamp(min=1.0)
        advantage = (-d / lengths)[:, None].expand_as(mask)
    total = _masked_sum(-advantage * student_logprobs.float(), mask)
    loss = total / _normaliser(mask, num_tokens, total.device)
    return loss, {"letter_kl": float(d.mean()), "tokens": float(_weights(mask).sum())}


# --------------------------------------------------------------------------- BCT cross-entropy and ACT


def completion_cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Cross-entropy ``sum_t mask_t * -log p(labels_t) / num_tokens`` (via ``token_logprobs``).

    Labels at masked-out positions are ignored (they may be -100). stats: ``ce`` (mean per
    token), ``tokens``.
    """
    if labels.shape != mask.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and mask {tuple(mask.shape)} differ in shape")
    safe_labels = torch.where(mask != 0, labels, torch.zeros_like(labels))
    total = _masked_sum(-token_logprobs(logits, safe_labels), mask)
    loss = total / _normaliser(mask, num_tokens, total.device)
    return loss, {"ce": _masked_mean_value(total, mask), "tokens": float(_weights(mask).sum())}


def act_l2_loss(
    wrapped_hidden: Sequence[torch.Tensor],
    clean_hidden: Sequence[torch.Tensor],
    mask: torch.Tensor,
    num_positions: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Activation consistency (ACT): pull wrapped-prompt activations onto clean ones.

    ``wrapped_hidden`` and ``clean_hidden`` are per-layer ``[B, T, D]`` tensors already
    aligned over the shared suffix; ``mask`` ``[B, T]`` marks the valid positions. Per layer
    and position the cost is ``||h_w - stopgrad(h_c)||^2 / D`` (mean over the hidden dim, so
    its scale does not depend on D); the loss is its masked sum over positions and layers
    divided by ``num_layers * num_positions`` (``num_positions`` defaults to ``mask.sum()``).
    stats: ``act_l2`` (mean per layer and position), ``positions``, ``layers``.
    """
    if len(wrapped_hidden) != len(clean_hidden) or len(wrapped_hidden) == 0:
        raise ValueError(
            f"need the same non-zero number of layers, got {len(wrapped_hidden)} and {len(clean_hidden)}"
        )
    total = None
    for h_w, h_c in zip(wrapped_hidden, clean_hidden):
        if h_w.shape != h_c.shape or h_w.shape[:2] != mask.shape:
            raise ValueError(
                f"hidden states must both be [B, T, D] with [B, T] = {tuple(mask.shape)}, "
                f"got {tuple(h_w.shape)} and {tuple(h_c.shape)}"
            )
        per_pos = (h_w.float() - h_c.detach().float()).pow(2).mean(-1)
        layer_sum = _masked_sum(per_pos, mask)
        total = layer_sum if total is None else total + layer_sum
    layers = len(wrapped_hidden)
    loss = total / (layers * _normaliser(mask, num_positions, total.device))
    stats = {
        "act_l2": _masked_mean_value(total, mask) / layers,
        "positions": float(_weights(mask).sum()),
        "layers": float(layers),
    }
    return loss, stats
