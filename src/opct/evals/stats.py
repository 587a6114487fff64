"""Confidence intervals for per-item eval scores.

Every eval metric in opct is reported as a `summarize` dict: {"value", "ci_low", "ci_high", "n"},
where value is the mean of per-item scores. For 0/1 indicators (rates) the 95% CI is the Wilson
score interval; for other scores it is a percentile bootstrap over items with a fixed seed, so
reruns give identical numbers. The bootstrap cannot be used for rates: it collapses to a point
when every item scores the same (0 of 128 would read 0.000 [0.000, 0.000]; Wilson gives
[0.000, 0.029]) and is too narrow near 0 and 1. Likewise a paired difference of two rates: when
few items differ, the bootstrap excludes 0 on 4 items out of 128 that all differ one way (an exact
sign test gives p = 0.125), so its interval also covers Newcombe's score interval for paired
proportions.
"""

from __future__ import annotations

from math import sqrt
from statistics import NormalDist
from typing import Any, Callable, Sequence

import numpy as np


def _as_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if np.isnan(arr).any():
        raise ValueError("values contain NaN; map missing items to a score (or drop them) before summarizing")
    return arr


def _bootstrap_stats(arr: np.ndarray, stat: Callable, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(arr), size=(n_boot, len(arr)))
    samples = arr[idx]
    try:  # vectorized when the statistic takes `axis` (np.mean, np.median, ...)
        out = np.asarray(stat(samples, axis=1), dtype=float)
        if out.shape == (n_boot,):
            return out
    except TypeError:
        pass
    return np.array([float(stat(s)) for s in samples])


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """(lo, hi): the alpha/2 and 1 - alpha/2 percentiles of `stat` over `n_boot` resamples
    (with replacement) of the items. Deterministic for a given seed. Raises on empty input."""
    arr = _as_array(values)
    if arr.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if arr.size == 1 or np.all(arr == arr[0]):  # no spread: the CI collapses to the point
        v = float(stat(arr))
        return v, v
    boots = _bootstrap_stats(arr, stat, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def wilson_interval(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes / n`."""
    if n < 1:
        raise ValueError("wilson_interval needs n >= 1")
    return _wilson_real(successes, n, alpha)


def is_binary(arr: np.ndarray) -> bool:
    return bool(np.isin(arr, (0.0, 1.0)).all())


def _covering_wilson(lo: float, hi: float, rate: float, n: int, alpha: float) -> tuple[float, float]:
    """(lo, hi) widened to cover the Wilson interval of `rate` over `n` independent units."""
    w_lo, w_hi = wilson_interval(rate * n, n, alpha)
    return min(lo, w_lo), max(hi, w_hi)


def _empty() -> dict[str, Any]:
    return {"value": None, "ci_low": None, "ci_high": None, "n": 0}


def _bootstrap_summary(arr: np.ndarray, n_boot: int, alpha: float, seed: int) -> dict[str, Any]:
    if arr.size == 0:
        return _empty()
    lo, hi = bootstrap_ci(arr, np.mean, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"value": float(arr.mean()), "ci_low": lo, "ci_high": hi, "n": int(arr.size)}


def summarize(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """{"value": mean, "ci_low", "ci_high", "n"}; for no values: value/ci None and n 0. 0/1 values
    get the Wilson interval, others the percentile bootstrap."""
    arr = _as_array(values)
    if arr.size == 0 or not is_binary(arr):
        return _bootstrap_summary(arr, n_boot, alpha, seed)
    lo, hi = wilson_interval(float(arr.sum()), int(arr.size), alpha)
    return {"value": float(arr.mean()), "ci_low": lo, "ci_high": hi, "n": int(arr.size)}


def cluster_summary(values: Sequence[float], clusters: Sequence[str], n_boot: int = 1000, alpha: float = 0.05,
                    seed: int = 0) -> dict[str, Any]:
    """The mean of per-item scores whose items come in clusters (the wrappers of one behaviour, the
    prompts of one fact): items of a cluster are not independent, so the percentile bootstrap
    resamples clusters, each with all its items. For 0/1 scores the interval also covers the
    Wilson interval with n = the number of clusters. Keys of `summarize`, plus "clusters"."""
    arr = _as_array(values)
    if arr.size != len(clusters):
        raise ValueError(f"cluster_summary: {arr.size} values but {len(clusters)} cluster labels")
    if arr.size == 0:
        return {**_empty(), "clusters": 0}
    names = sorted(set(clusters))
    index = {c: i for i, c in enumerate(names)}
    ids = np.array([index[c] for c in clusters])
    sums, sizes = np.bincount(ids, arr, len(names)), np.bincount(ids, minlength=len(names)).astype(float)
    value = float(arr.mean())
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(names), size=(n_boot, len(names)))
    boots = sums[drawn].sum(1) / sizes[drawn].sum(1)
    lo, hi = (float(x) for x in np.quantile(boots, [alpha / 2, 1 - alpha / 2]))
    if is_binary(arr):
        lo, hi = _covering_wilson(lo, hi, value, len(names), alpha)
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": int(arr.size), "clusters": len(names)}


def paired_diff_summary(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """mean(a) - mean(b) for two scores on the same items, with a paired bootstrap CI (items are
    resampled together, so the per-item correlation narrows the interval); for two 0/1 scores at
    least Newcombe's paired interval. Same keys as `summarize`."""
    a_arr, b_arr = _as_array(a), _as_array(b)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired arrays differ in length: {a_arr.size} vs {b_arr.size}")
    # resampling item indices and differencing means == bootstrapping the per-item differences
    out = _bootstrap_summary(a_arr - b_arr, n_boot, alpha, seed)
    if a_arr.size and is_binary(a_arr) and is_binary(b_arr):
        out["ci_low"], out["ci_high"] = _covering_newcombe(out["ci_low"], out["ci_high"], a_arr[None], b_arr[None], alpha)
    return out


def newcombe_paired_interval(both: float, only_a: float, only_b: float, neither: float,
                             alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe's (1998, method 10) score interval for p_a - p_b from paired 0/1 outcomes, given
    the counts of the 2x2 table (real-valued counts are allowed: averages over seeds)."""
    n = both + only_a + only_b + neither
    if n <= 0:
        raise ValueError("newcombe_paired_interval needs at least one pair")
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    l_a, u_a = _wilson_real(both + only_a, n, alpha)
    l_b, u_b = _wilson_real(both + only_b, n, alpha)
    # The correlation of the pair, with Newcombe's correction: positive values are shrunk by n / 2.
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    cross = cross - n / 2 if cross > n / 2 else min(cross, 0.0)
    phi = cross / sqrt(margins) if margins > 0 else 0.0
    diff = p_a - p_b
    lo = diff - sqrt(max(0.0, (p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2))
    hi = diff + sqrt(max(0.0, (u_a - p_a) ** 2 - 2 * phi * (u_a - p_a) * (p_b - l_b) + (p_b - l_b) ** 2))
    return max(-1.0, lo), min(1.0, hi)


def _wilson_real(successes: float, n: float, alpha: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _covering_newcombe(lo: float, hi: float, a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[float, float]:
    """(lo, hi) widened to cover Newcombe's interval for 0/1 matrices a, b of shape (seeds, items):
    the 2x2 counts are averaged over seeds, and the items are the independent units."""
    counts = [float(((a == x) & (b == y)).sum(1).mean()) for x, y in ((1, 1), (1, 0), (0, 1), (0, 0))]
    n_lo, n_hi = newcombe_paired_interval(*counts, alpha=alpha)
    return min(lo, n_lo), max(hi, n_hi)


def _seed_item_matrix(scores: Sequence[dict[str, float]], ids: Sequence[str]) -> np.ndarray:
    return np.array([[s[i] for i in ids] for s in scores], dtype=float)


def seeded_paired_diff(a: Sequence[dict[str, float]], b: Sequence[dict[str, float]], n_boot: int = 1000,
                       alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """mean(a) - mean(b) over training seeds and items, with a two-level paired bootstrap: seeds
    are resampled, then items (the same items for both sides, so their correlation narrows the
    interval). `a[k]` and `b[k]` are {item id: score} for seed k; only ids every seed scored are
    used. For 0/1 scores the interval also covers Newcombe's paired interval (the 2x2 counts
    averaged over seeds, n = the items). With one seed this is `paired_diff_summary` over the
    shared items. Same keys as `summarize`, plus "seeds", "discordant" (the (seed, item) pairs
    whose scores differ) and "p" (`sign_flip_p` over the items' mean differences across seeds)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"seeded_paired_diff needs the same number of seeds on both sides, got {len(a)} and {len(b)}")
    ids = sorted(set.intersection(*(set(s) for s in [*a, *b])))
    if not ids:
        return {**_empty(), "seeds": len(a), "discordant": 0}
    a_mat, b_mat = _seed_item_matrix(a, ids), _seed_item_matrix(b, ids)  # (seeds, items)
    diff = a_mat - b_mat
    out = _seeded_bootstrap(diff, n_boot, alpha, seed)
    if is_binary(a_mat) and is_binary(b_mat):
        out["ci_low"], out["ci_high"] = _covering_newcombe(out["ci_low"], out["ci_high"], a_mat, b_mat, alpha)
    return {**out, "seeds": len(a), "discordant": int((diff != 0).sum()), "p": sign_flip_p(diff.mean(0), seed=seed)}


def verdict_direction(diff: dict[str, Any], alpha: float = 0.05) -> int | None:
    """The direction a paired difference gives a verdict in: +1 or -1 when its interval excludes 0 and
    the sign-flip test agrees (p < alpha, where the difference has a p), else 0; None without data.
    The one rule behind every verdict (the demo's yes / no, the audit's amplified / suppressed)."""
    lo, hi = diff.get("ci_low"), diff.get("ci_high")
    if lo is None or hi is None:
        return None
    if diff.get("p", 0.0) >= alpha:
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def sign_flip_p(diffs: Sequence[float] | np.ndarray, draws: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip test that the mean difference is 0: each item's
    difference keeps its size and takes either sign with equal chance. Exact when at most 16 items
    differ from 0 (all 2^k signs), else from `draws` seeded random signs. Unlike a bootstrap it does
    not call 4 items that all differ one way significant (p = 0.125)."""
    d = _as_array(diffs)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum()) * (1 - 1e-9)
    if d.size <= 16:
        signs = ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1) * 2 - 1
        return float(np.mean(np.abs(signs @ d) >= observed))
    rng, extreme = np.random.default_rng(seed), 0
    for start in range(0, draws, 1000):  # blocks keep memory bounded for long evaluations
        signs = rng.choice([-1.0, 1.0], size=(min(1000, draws - start), d.size))
        extreme += int(np.sum(np.abs(signs @ d) >= observed))
    return float((1 + extreme) / (draws + 1))


def _seeded_bootstrap(diff: np.ndarray, n_boot: int, alpha: float, seed: int) -> dict[str, Any]:
    """The mean of a (seeds, items) matrix with the two-level percentile bootstrap."""
    value = float(diff.mean())
    if diff.size == 1 or np.all(diff == diff.flat[0]):
        lo = hi = value
    else:
        rng = np.random.default_rng(seed)
        s_idx = rng.integers(0, diff.shape[0], size=(n_boot, diff.shape[0]))
        i_idx = rng.integers(0, diff.shape[1], size=(n_boot, diff.shape[1]))
        boots = diff[s_idx[:, :, None], i_idx[:, None, :]].mean(axis=(1, 2))
        lo, hi = (float(x) for x in np.quantile(boots, [alpha / 2, 1 - alpha / 2]))
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": diff.shape[1]}


def seeded_summary(scores: Sequence[dict[str, float]], n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> dict[str, Any]:
    """The mean of per-item scores over seeds and items, with the same two-level bootstrap as
    `seeded_paired_diff` (against zero). For 0/1 scores the interval also covers the Wilson
    interval over the items (the mean rate, n = items), which the bootstrap can undercut near 0
    and 1 (it collapses when every answer scores the same); with one seed it is that interval."""
    if not scores:
        raise ValueError("seeded_summary needs at least one seed")
    ids = sorted(set.intersection(*(set(s) for s in scores)))
    if not ids:
        return {**_empty(), "seeds": len(scores)}
    out = {**_seeded_bootstrap(_seed_item_matrix(scores, ids), n_boot, alpha, seed), "seeds": len(scores)}
    if is_binary(np.array([v for s in scores for v in s.values()], dtype=float)):
        if len(scores) > 1:
            lo, hi = _covering_wilson(out["ci_low"], out["ci_high"], out["value"], out["n"], alpha)
        else:
            lo, hi = wilson_interval(out["value"] * out["n"], out["n"], alpha)
        out.update(ci_low=lo, ci_high=hi)
    return out
