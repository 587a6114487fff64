import numpy as np
import pytest

from opct.evals.stats import (bootstrap_ci, cluster_summary, newcombe_paired_interval, paired_diff_summary,
                              seeded_paired_diff, seeded_summary, sign_flip_p, summarize, wilson_interval)


def test_summarize_binary():
    vals = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    s = summarize(vals)
    assert s["value"] == pytest.approx(0.7)
    assert s["n"] == 10
    assert s["ci_low"] <= 0.7 <= s["ci_high"]
    assert 0.0 <= s["ci_low"] < s["ci_high"] <= 1.0
    assert summarize(vals) == s  # fixed seed: deterministic


def test_summarize_empty_and_constant():
    assert summarize([]) == {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    assert summarize([0.25]) == {"value": 0.25, "ci_low": 0.25, "ci_high": 0.25, "n": 1}
    assert summarize([0.5, 0.5]) == {"value": 0.5, "ci_low": 0.5, "ci_high": 0.5, "n": 2}  # scores, not a rate


def test_rates_get_wilson_intervals_that_never_collapse():
    # 0 of 128 is not certainty: the rule-of-three bound is about 3/128, Wilson's 3.84/131.84
    zero = summarize([0] * 128)
    assert zero["value"] == 0.0 and zero["ci_low"] == 0.0
    assert zero["ci_high"] == pytest.approx(1.96**2 / (128 + 1.96**2), rel=1e-3)
    every = summarize([1, 1, 1])
    assert every["ci_high"] == 1.0 and every["ci_low"] == pytest.approx(3 / (3 + 1.96**2), rel=1e-3)
    # a textbook value: 7 of 10 -> [0.397, 0.892]
    lo, hi = wilson_interval(7, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.397, 0.892)
    # away from the boundary it agrees with the bootstrap it replaced
    rate = [1.0] * 60 + [0.0] * 40
    boot = bootstrap_ci(rate)
    got = summarize(rate)
    assert got["ci_low"] == pytest.approx(boot[0], abs=0.02) and got["ci_high"] == pytest.approx(boot[1], abs=0.02)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_seeded_rates_cover_the_wilson_interval():
    items = [f"q{i}" for i in range(50)]
    zero = [dict.fromkeys(items, 0.0), dict.fromkeys(items, 0.0)]
    s = seeded_summary(zero)
    assert s["value"] == 0.0 and s["ci_high"] == pytest.approx(wilson_interval(0, 50)[1])
    one_seed = seeded_summary([{**dict.fromkeys(items, 0.0), "q0": 1.0}])
    assert (one_seed["ci_low"], one_seed["ci_high"]) == pytest.approx(wilson_interval(1, 50))
    floats = seeded_summary([dict.fromkeys(items, 0.5)])
    assert floats["ci_low"] == floats["ci_high"] == 0.5  # not a rate: the bootstrap, as before


def test_bootstrap_ci_seed_and_stat():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=200)
    lo, hi = bootstrap_ci(x)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x, seed=0)
    assert (lo, hi) != bootstrap_ci(x, seed=1)
    # roughly mean +- 1.96 * sd / sqrt(n)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert hi - lo == pytest.approx(2 * half, rel=0.2)
    # a statistic without `axis` goes through the loop fallback
    lo_m, hi_m = bootstrap_ci(x, stat=lambda s: float(np.median(s)), n_boot=200)
    assert lo_m < np.median(x) < hi_m
    # wider interval for smaller alpha
    lo99, hi99 = bootstrap_ci(x, alpha=0.01)
    assert lo99 <= lo and hi99 >= hi
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_paired_diff():
    a = [1, 1, 0, 1, 1, 0, 1, 1]
    b = [0, 1, 0, 0, 1, 0, 0, 1]
    d = paired_diff_summary(a, b)
    assert d["value"] == pytest.approx(np.mean(a) - np.mean(b))
    assert d["n"] == 8
    assert d["ci_low"] <= d["value"] <= d["ci_high"]
    # identical scores: zero difference, zero-width CI (pairing removes all spread)
    scores = [0.5, 0.25, 1.5, 0.75]
    assert paired_diff_summary(scores, scores) == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 4}
    # identical rates are not certainty: 8 items that agree leave room for a difference
    same = paired_diff_summary(a, a)
    assert same["value"] == 0.0 and same["ci_low"] < -0.05 and same["ci_high"] > 0.05
    assert paired_diff_summary([], [])["value"] is None
    with pytest.raises(ValueError):
        paired_diff_summary([1, 0], [1])


def test_newcombe_paired_interval():
    # The paired 2x2 table (59, 6; 16, 80) of Fagerland, Lydersen and Laake's chapter 8: difference
    # -0.0621, Newcombe's square-and-add interval [-0.1186, -0.0046] (their R package's test).
    lo, hi = newcombe_paired_interval(59, 6, 16, 80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)
    swapped = newcombe_paired_interval(59, 16, 6, 80)  # the two sides swapped: the interval mirrored
    assert swapped == pytest.approx((0.0046, 0.1186), abs=1e-4)


def test_sparse_paired_rates_cover_newcombe():
    """4 of 128 items differ, all one way: the percentile bootstrap excludes 0, a score interval does not."""
    a, b = [1.0] * 4 + [0.0] * 124, [0.0] * 128
    d = paired_diff_summary(a, b)
    assert d["value"] == pytest.approx(4 / 128)
    assert d["ci_low"] < 0 < d["ci_high"]
    assert bootstrap_ci([x - y for x, y in zip(a, b)])[0] > 0  # what the bootstrap alone said
    items = [f"q{i}" for i in range(128)]
    sa, sb = dict(zip(items, a)), dict(zip(items, b))
    seeded = seeded_paired_diff([sa, sa], [sb, sb])
    assert seeded["ci_low"] < 0 and seeded["discordant"] == 8
    # continuous scores keep the bootstrap
    cont = seeded_paired_diff([{k: v * 0.5 for k, v in sa.items()}], [sb])
    assert cont["ci_low"] > 0 and cont["discordant"] == 4


def test_sign_flip_p():
    assert sign_flip_p([1, 1, 1, 1, 0, 0]) == pytest.approx(2 / 16)  # the exact sign test's 0.125
    assert sign_flip_p([1.0] * 6) == pytest.approx(2 / 64)
    assert sign_flip_p([1, 1, 1, -1]) == pytest.approx(1 - 6 / 16)
    assert sign_flip_p([0.0, 0.0]) == 1.0
    assert sign_flip_p([0.5, 0.25, 0.25]) == pytest.approx(2 / 8)  # sizes count: only the all-same signs reach 1.0
    many = sign_flip_p([1.0] * 30)  # past 16 items: random signs, seeded
    assert many < 0.001 and many == sign_flip_p([1.0] * 30)
    assert sign_flip_p([1.0, -1.0] * 15) > 0.9


def test_sparse_continuous_differences_need_the_sign_flip_test():
    """Pass rates per fact: 4 of 20 facts up by 0.25, none down. The bootstrap interval excludes 0;
    the sign-flip test (p = 0.125) does not call it."""
    facts = [f"f{i}" for i in range(20)]
    a = {f: (0.25 if i < 4 else 0.0) for i, f in enumerate(facts)}
    b = dict.fromkeys(facts, 0.0)
    d = seeded_paired_diff([a], [b])
    assert d["ci_low"] > 0 and d["p"] == pytest.approx(0.125)


def test_seeded_paired_diff_one_seed_is_the_item_bootstrap():
    a = {"x": 1.0, "y": 0.0, "z": 1.0, "w": 1.0}
    b = {"x": 0.0, "y": 0.0, "z": 1.0, "w": 0.0, "extra": 1.0}  # ids only one side scored are left out
    d = seeded_paired_diff([a], [b])
    ref = paired_diff_summary([1, 0, 1, 1], [0, 0, 1, 0])
    assert d["value"] == pytest.approx(0.5) and d["n"] == 4 and d["seeds"] == 1
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(ref["ci_low"]), pytest.approx(ref["ci_high"]))


def test_seeded_paired_diff_over_seeds():
    # Seed 0: a beats b on every item; seed 1: a equals b. The mean difference is 0.5 over both.
    items = [f"q{i}" for i in range(20)]
    a = [dict.fromkeys(items, 1.0), dict.fromkeys(items, 0.0)]
    b = [dict.fromkeys(items, 0.0), dict.fromkeys(items, 0.0)]
    d = seeded_paired_diff(a, b)
    assert d["value"] == pytest.approx(0.5) and d["seeds"] == 2 and d["n"] == 20
    # Items carry no spread within a seed: the interval comes from resampling seeds (0, 0.5 or 1).
    assert d["ci_low"] == pytest.approx(0.0) and d["ci_high"] == pytest.approx(1.0)
    assert seeded_summary(a)["value"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same number of seeds"):
        seeded_paired_diff(a, b[:1])
    assert seeded_paired_diff([{"x": 1.0}], [{"y": 1.0}])["value"] is None


def test_cluster_summary_resamples_clusters_not_items():
    # 20 behaviours x 4 wrappers; whether an attempt cracks depends on the behaviour alone
    clusters = [f"b{i}" for i in range(20) for _ in range(4)]
    values = [float(i < 8) for i in range(20) for _ in range(4)]
    got = cluster_summary(values, clusters)
    assert got["value"] == pytest.approx(0.4) and got["n"] == 80 and got["clusters"] == 20
    naive = summarize(values)  # as if the 80 attempts were independent
    assert got["ci_high"] - got["ci_low"] > 1.5 * (naive["ci_high"] - naive["ci_low"])
    # it is about the interval 20 independent behaviours would give
    per_behaviour = summarize([float(i < 8) for i in range(20)])
    assert got["ci_low"] == pytest.approx(per_behaviour["ci_low"], abs=0.05)
    assert got["ci_high"] == pytest.approx(per_behaviour["ci_high"], abs=0.05)
    # no cracks at all: not a point, but about what 20 behaviours allow
    zero = cluster_summary([0.0] * 80, clusters)
    assert zero["ci_high"] == pytest.approx(wilson_interval(0, 20)[1])
    with pytest.raises(ValueError, match="cluster labels"):
        cluster_summary([1.0], [])
    assert cluster_summary([], [])["value"] is None
