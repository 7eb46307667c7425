"""bench.resample: intervals over seeds and prompts, paired and unpaired differences, clustered
agreement and multiplicity adjustment, on answers worked out by hand. Coverage by simulation
is in tests/test_coverage.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.resample import (Interval, adjust, cluster_agreement, paired_difference,
                            two_level_mean, unpaired_difference, variance_components)
from bench.stats import t_interval


def test_no_spread_is_no_interval_unless_the_metric_is_deterministic():
    """A constant matrix shows no variance, which is not the same as having none: the interval
    and p-value are nan (adjust() leaves the test out) rather than zero width with p = 0, a
    certain rejection. A caller whose metric is not random says so and gets the zero width."""
    got = two_level_mean(np.full((3, 40), 0.7), null=0.5)
    assert got.estimate == 0.7 and math.isnan(got.low) and math.isnan(got.high)
    assert math.isnan(got.p_value) and math.isnan(got.se)
    fixed = two_level_mean(np.full((3, 40), 0.7), null=0.7, deterministic=True)
    assert (fixed.low, fixed.high, fixed.se, fixed.p_value) == (0.7, 0.7, 0.0, 1.0)
    a, b = np.full((3, 5), 0.9), np.full((3, 5), 0.2)
    diffs = [paired_difference(a, b, paired_seeds=True), unpaired_difference(a, b),
             paired_difference(a, b, paired_seeds=False)]
    assert diffs[2].estimate == pytest.approx(0.7)
    assert all(math.isnan(d.low) and math.isnan(d.p_value) for d in diffs)
    assert adjust([d.p_value for d in diffs] + [0.01])[1].tolist() == [False] * 3 + [True]
    sure = paired_difference(a, b, paired_seeds=False, deterministic=True)
    assert sure.low == sure.high == sure.estimate and sure.p_value == 0.0
    assert unpaired_difference(a, b, deterministic=True).p_value == 0.0


def test_values_all_at_a_bound_get_the_exact_binomial_bound():
    """Three prompts whose judgments all agree: not [1, 1] with p = 0 against 0.5, but the
    Clopper-Pearson interval of three successes in three clusters, [0.025^(1/3), 1] =
    [0.292, 1], and the same exact test's p = 2 * 0.5^3 = 0.25; all disagreeing, the mirror.
    A matrix of wins counts the fewer of seeds and prompts as its independent units (the
    prompts with one seed); without ``bounds`` it is nan as any constant matrix."""
    agree = cluster_agreement([1.0] * 6, [0, 0, 1, 1, 2, 2], null=0.5)
    assert agree.low == pytest.approx(0.025 ** (1 / 3)) and agree.high == 1.0
    assert agree.p_value == pytest.approx(0.25) and not adjust([agree.p_value])[1][0]
    edge = cluster_agreement([1.0] * 6, [0, 0, 1, 1, 2, 2], level=0.75)
    assert edge.low == pytest.approx(0.5)  # the interval at level 1 - p ends at the null
    none = cluster_agreement([0.0] * 4, ["a", "b", "c", "d"], null=0.5)
    assert (none.low, none.high) == pytest.approx((0.0, 1 - 0.025 ** 0.25))
    assert none.p_value == pytest.approx(2 * 0.5 ** 4)
    wins = two_level_mean(np.ones((3, 40)), null=0.5, bounds=(0.0, 1.0))
    assert (wins.low, wins.high, wins.p_value) == pytest.approx((0.025 ** (1 / 3), 1, 0.25))
    one_seed = two_level_mean(np.ones((1, 40)), null=0.5, bounds=(0.0, 1.0))
    assert one_seed.low == pytest.approx(0.025 ** (1 / 40)) and not one_seed.over_seeds
    assert one_seed.p_value == pytest.approx(2 * 0.5 ** 40)
    assert math.isnan(two_level_mean(np.ones((3, 40)), null=0.5).p_value)
    exact = cluster_agreement([1.0] * 6, [0, 0, 1, 1, 2, 2], null=1.0, deterministic=True)
    assert (exact.low, exact.high, exact.p_value) == (1.0, 1.0, 1.0)


def test_the_anova_components_and_interval_of_a_tiny_matrix_by_hand():
    """Seed means 3 and 5, prompt means 2, 3.5, 6.5, grand mean 4; residuals 0, -0.5, 0.5 /
    0, 0.5, -0.5: MS_seed = 3 * 2 = 6, MS_prompt = 2 * 5.25 = 10.5, MS_resid = 1 / 2."""
    y = [[1.0, 2.0, 6.0], [3.0, 5.0, 7.0]]
    ms_s, ms_p, ms_e, s, p = 6.0, 10.5, 0.5, 2, 3
    assert variance_components(y) == pytest.approx(((ms_s - ms_e) / p, (ms_p - ms_e) / s, ms_e))
    var = (ms_s + ms_p - ms_e) / (s * p)  # var_seed/S + var_prompt/P + var_resid/(S P)
    assert var == pytest.approx(8 / 3)
    # the seed component MS_seed / 6 = 1 on S - 1 = 1 df; the prompt one (MS_prompt - MS_resid)
    # / 6 = 5 / 3 on P - 1 = 2, each at its own t quantile (a pooled Satterthwaite df, 2.81,
    # would take t = 3.3 for both: half-width 5.4 where this is 13.9)
    half = math.sqrt(sps.t.ppf(0.975, 1) ** 2 * 1 + sps.t.ppf(0.975, 2) ** 2 * 5 / 3)
    assert half == pytest.approx(13.87, abs=0.005)
    got = two_level_mean(y)
    assert got.estimate == 4.0 and got.se == pytest.approx(math.sqrt(var))
    assert (got.low, got.high) == pytest.approx((4 - half, 4 + half))
    assert sps.t.ppf(0.975, got.df) * got.se == pytest.approx(half)  # the one t that is as wide
    assert got.p_value is None and got.over_seeds


def test_seeds_that_agree_exactly_keep_the_residual_noise():
    """Equal seed means and equal prompt means, all the spread in the interaction: no seed and
    no prompt variance, residual mean square 6 / 4. The seed term is floored at the residual
    share (1.5 / 9) on S - 1 = 2 degrees of freedom rather than collapsing to zero width."""
    y = 5 + np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]])
    assert variance_components(y) == pytest.approx((0.0, 0.0, 1.5))
    got = two_level_mean(y)
    assert got.se == pytest.approx(math.sqrt(1.5 / 9)) and got.df == pytest.approx(2)
    assert got.high - got.estimate == pytest.approx(sps.t.ppf(0.975, 2) * math.sqrt(1.5 / 9))


def test_one_seed_is_the_interval_over_prompts_and_says_so():
    x = np.array([0.2, 0.9, 0.4, 0.6, 0.7])
    got = two_level_mean(x[None, :])
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert not got.over_seeds and got.df == 4 and got.se == pytest.approx(se)
    assert got.high == pytest.approx(x.mean() + sps.t.ppf(0.975, 4) * se)
    assert math.isnan(variance_components(x[None, :])[0])


def test_one_prompt_is_the_t_interval_over_seeds():
    seeds = [0.41, 0.47, 0.52, 0.44]
    got = two_level_mean(np.array(seeds)[:, None])
    assert (got.estimate, got.low, got.high) == pytest.approx(t_interval(seeds))


def test_a_missing_prompt_is_filled_by_the_additive_fit():
    """An exactly additive matrix with one cell knocked out: the seed and prompt means of the
    rest determine the cell, so the mean is the full matrix's, where a plain nanmean, which
    drops a hard prompt from one seed, is not. Empty seeds and prompts are dropped."""
    full = np.add.outer([0.0, 0.1, 0.3], [0.2, 0.9, 0.5, 0.4])
    y = full.copy()
    y[1, 1] = np.nan
    assert abs(np.nanmean(y) - full.mean()) > 0.01
    assert two_level_mean(y).estimate == pytest.approx(full.mean(), abs=1e-10)
    padded = np.full((4, 5), np.nan)
    padded[:3, :4] = y
    assert two_level_mean(padded) == two_level_mean(y)
    assert math.isnan(two_level_mean(np.full((2, 3), np.nan)).low)


def _shared_prompt_pair(rng, sd_prompt, s=5, p=200):
    prompts = rng.normal(0, sd_prompt, p)
    a = 0.1 + rng.normal(0, 0.05, (s, 1)) + prompts + rng.normal(0, 0.3, (s, p))
    b = rng.normal(0, 0.05, (s, 1)) + prompts + rng.normal(0, 0.3, (s, p))
    return a, b


def _width(i: Interval) -> float:
    return i.high - i.low


@pytest.mark.parametrize("paired_seeds", [False, True])
def test_pairing_by_prompt_removes_shared_prompt_variance(paired_seeds):
    """Large prompt effects shared by both methods (sd 1 against a seed sd of 0.05 and a
    residual of 0.3): pairing removes 2 var_prompt / P from the variance, and 0.38 of the
    unpaired width remains (0.43 with the seeds paired too: these seeds share nothing, and the
    difference's one seed term has 4 degrees of freedom where two separate ones have about 8).
    Without prompt effects the two agree."""
    rng = np.random.default_rng(3)
    ratios = {}
    for sd_prompt in (1.0, 0.0):
        pairs = [_shared_prompt_pair(rng, sd_prompt) for _ in range(200)]
        ratios[sd_prompt] = (
            np.mean([_width(paired_difference(a, b, paired_seeds=paired_seeds)) for a, b in pairs])
            / np.mean([_width(unpaired_difference(a, b)) for a, b in pairs]))
    assert ratios[1.0] < 0.5
    assert 0.85 < ratios[0.0] < 1.15


def test_paired_seeds_is_the_mean_of_the_difference_matrix():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    assert paired_difference(a, b, paired_seeds=True) == two_level_mean(a - b, null=0.0)
    with pytest.raises(ValueError):
        paired_difference(a, b[:, :20], paired_seeds=False)
    with pytest.raises(ValueError):
        paired_difference(a, b[:3], paired_seeds=True)
    unequal = paired_difference(a, b[:3], paired_seeds=False)  # seed counts may differ
    assert unequal.estimate == pytest.approx(a.mean() - b[:3].mean())


def _consistent(i: Interval, null: float) -> bool:
    return (i.low <= null <= i.high) == (i.p_value >= 0.05)


def test_p_values_agree_with_their_intervals():
    """Over random matrices with effects near the edge of significance, a 95% interval
    excludes the null exactly when p < 0.05; and the interval at level 1 - p ends at the
    null."""
    rng = np.random.default_rng(5)
    seen = set()
    for k in range(300):
        s = 1 + k % 5
        a = rng.normal(0.05, 0.2, (s, 1)) + rng.normal(0, 0.5, (s, 40))
        b = rng.normal(0, 0.2, (s, 1)) + rng.normal(0, 0.5, (s, 40))
        for got, null in ((paired_difference(a, b, paired_seeds=True), 0.0),
                          (paired_difference(a, b, paired_seeds=False), 0.0),
                          (unpaired_difference(a, b), 0.0), (two_level_mean(a, null=0.05), 0.05)):
            assert _consistent(got, null)
            seen.add(got.p_value < 0.05)
    assert seen == {True, False}
    got = unpaired_difference(a, b)
    edge = unpaired_difference(a, b, level=1 - got.p_value)
    assert min(abs(edge.low), abs(edge.high)) == pytest.approx(0, abs=1e-9)


def _clustered(rng, n_clusters, size, spread):
    p = rng.choice([0.5 - spread, 0.5 + spread], n_clusters)
    agree = (rng.random((n_clusters, size)) < p[:, None]).astype(float).ravel()
    return agree, np.repeat([f"prompt-{i}" for i in range(n_clusters)], size)


def test_the_cluster_interval_is_wider_than_the_iid_one_when_clusters_agree_within():
    """Clusters of ten judgments whose agreement rate is 0.1 or 0.9: the design effect
    1 + (m - 1) rho is about 6.8, the width about 2.7 times the interval that treats every
    judgment as its own cluster. With one rate for all, the two are alike."""
    rng = np.random.default_rng(6)
    agree, clusters = _clustered(rng, 40, 10, 0.4)
    iid = cluster_agreement(agree, np.arange(len(agree)))
    assert _width(cluster_agreement(agree, clusters)) > 2 * _width(iid)
    agree, clusters = _clustered(rng, 40, 10, 0.0)
    ratio = _width(cluster_agreement(agree, clusters)) / _width(
        cluster_agreement(agree, np.arange(len(agree))))
    assert 0.8 < ratio < 1.25


def _cr1(agree, clusters) -> float:
    """The CR1 cluster-robust standard error of the mean, G / (G - 1) * sum_g (sum_g -
    mean * n_g)^2 / N^2, written out."""
    g = len(set(clusters.tolist()))
    resid = np.bincount(clusters, weights=agree - agree.mean())
    return math.sqrt(g / (g - 1) * np.sum(resid ** 2)) / len(agree)


def test_the_cluster_bootstrap_se_is_the_cluster_robust_one():
    """The bootstrap variance of the mean over whole clusters, scaled by G / (G - 1), is the
    CR1 variance: exactly in expectation for ten clusters of one size (unscaled it would be
    5% short), to first order for sixty of unequal sizes; with singleton clusters s^2 / n."""
    rng = np.random.default_rng(7)
    clusters = np.repeat(np.arange(10), 6)
    agree = (rng.random(60) < rng.random(10)[clusters]).astype(float)
    got = cluster_agreement(agree, clusters, n_boot=100000)
    assert got.se == pytest.approx(_cr1(agree, clusters), rel=0.012) and got.df == 9
    clusters = np.repeat(np.arange(60), rng.integers(1, 8, 60))
    agree = (rng.random(len(clusters)) < rng.random(60)[clusters]).astype(float)
    got = cluster_agreement(agree, clusters, n_boot=40000)
    assert got.se == pytest.approx(_cr1(agree, clusters), rel=0.03)
    single = cluster_agreement(agree, np.arange(len(agree)), n_boot=40000)
    assert single.se == pytest.approx(agree.std(ddof=1) / math.sqrt(len(agree)), rel=0.03)
    assert _consistent(cluster_agreement(agree, clusters, null=0.5), 0.5)


def test_cluster_agreement_edges():
    everyone = cluster_agreement([1.0] * 6, [0, 0, 1, 1, 2, 2], null=1.0)
    assert (everyone.low, everyone.high, everyone.p_value) == pytest.approx(
        (0.025 ** (1 / 3), 1.0, 1.0))
    halves = cluster_agreement([1.0, 0.0] * 3, [0, 0, 1, 1, 2, 2], null=0.4)
    assert halves.estimate == 0.5 and math.isnan(halves.low)  # random, yet no spread
    one = cluster_agreement([1.0, 0.0, 1.0], ["a", "a", "a"])
    assert one.estimate == pytest.approx(2 / 3) and math.isnan(one.low)
    near_one = cluster_agreement([1.0] * 9 + [0.0], list(range(10)))
    assert near_one.high == 1.0 and near_one.low < 0.9  # within [0, 1]
    skipped = cluster_agreement([1.0, math.nan, 0.0, 1.0], ["a", "b", "c", "c"])
    assert skipped.estimate == pytest.approx(2 / 3) and skipped.df == 1
    with pytest.raises(ValueError):
        cluster_agreement([1.0, 0.0], ["a"])


def test_holm_and_benjamini_hochberg_on_a_textbook_family():
    """p = 0.01, 0.04, 0.03, 0.005. Holm: sorted 0.005 * 4 = 0.02, 0.01 * 3 = 0.03,
    0.03 * 2 = 0.06, 0.04 * 1 raised to 0.06 (monotone). BH: 0.005 * 4 / 1 = 0.02,
    0.01 * 4 / 2 = 0.02, 0.03 * 4 / 3 = 0.04, 0.04 * 4 / 4 = 0.04."""
    p = [0.01, 0.04, 0.03, 0.005]
    holm, holm_reject = adjust(p, "holm")
    assert holm == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_reject.tolist() == [True, False, False, True]
    bh, bh_reject = adjust(p, "fdr_bh")
    assert bh == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert bh_reject.tolist() == [True, True, True, True]
    assert adjust(p, "holm", alpha=0.025)[1].tolist() == [False, False, False, True]


def test_a_missing_p_value_is_left_out_of_the_family():
    """An untested comparison (None or NaN) stays NaN and unrejected, and the others are
    adjusted as the family of four they are, not five."""
    adjusted, reject = adjust([0.01, None, 0.04, math.nan, 0.03, 0.005], "holm")
    assert np.isnan(adjusted[[1, 3]]).all() and not reject[[1, 3]].any()
    assert adjusted[[0, 2, 4, 5]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust([math.nan, None], "fdr_bh")[1].tolist() == [False, False]
    with pytest.raises(ValueError):
        adjust([0.01], "bonferroni")
