"""Uncertainty shared by evals and reports: bootstrap over examples, intervals over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

N_BOOT = 2000  # at least 1,000 resamples per bootstrap interval (docs/design.md, Metrics)


def bootstrap_se(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0) -> float:
    """Bootstrap standard error of the mean over examples (0 for fewer than two)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return float(means.std(ddof=1))


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean over examples."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan)
    if len(x) == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def t_interval(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval over seeds: (mean, low, high).

    With one seed the interval is undefined and returned as (mean, nan, nan): the report says
    so rather than showing a zero-width interval."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if len(x) < 2:
        return (m, math.nan, math.nan)
    half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return (m, m - half, m + half)


def paired_delta(a: Sequence[float], b: Sequence[float], *, level: float = 0.95
                 ) -> tuple[float, float, float]:
    """Mean of a - b over paired seeds with a t-interval."""
    return t_interval([x - y for x, y in zip(a, b, strict=True)], level=level)


def seed_interval(values: Sequence[float], ses: Sequence[float | None] | None = None, *,
                  level: float = 0.95, invariant: bool | None = None
                  ) -> tuple[float, float, float]:
    """Mean over seeds and an interval never narrower than the evaluation noise it contains:
    (mean, low, high).

    Each seed's value is x_i = mu + b_i + e_i: b_i the seed's own effect (its training run),
    e_i the evaluation noise whose standard error ``ses[i]`` the eval estimated over hundreds
    of examples. The spread S^2 of a few seed values estimates var(b) + mean(se^2) but can fall
    far below it by chance (three seeds that agree to 0.003 while each carries an SE of 0.01),
    and a t-interval on S^2 alone then excludes values it must contain. So the variance of the
    mean is max(S^2, mean(se_i^2)) / n with Student-t on n - 1 degrees of freedom: the
    random-effects interval of Knapp and Hartung with its scale floored at 1 ("modified
    HKSJ", Roever, Knapp and Friede 2015), here with the equal seed weights that the reported
    mean uses. statsmodels' combine_effects weights seeds by inverse variance, which would
    change the reported means, hence this small function. Without SEs it is the t-interval.

    The population is the scenario's evaluation prompts: every seed is scored on the same
    prompts, so the per-seed SE (a bootstrap over those prompts) holds their heterogeneity as
    well as the sampling noise, and the floor is conservative for that target. Generalizing to
    other prompts would add the prompt variance once, not divided by n; a hierarchical
    bootstrap over seeds and prompts would need per-prompt values the cells do not store.

    A value the same on every seed (the base model's MC1: nothing trained, nothing sampled)
    is one evaluation repeated, not n draws: dividing its SE by sqrt(n) would narrow the
    interval with every seed added while no seed adds information. Its interval is at least
    the evaluation's own, mean +- z * SE (the SE is a bootstrap over many examples, so
    normal), which more examples, not more seeds, would narrow; never narrower than the
    floored t above, for values that agree by chance (a rate over 20 questions moves in steps
    of 0.05). ``invariant`` says whether the values are such (a paired difference of two
    seed-invariant rows; a difference that agrees on every seed while its two sides vary is
    not); None: when they are all equal."""
    pairs = [(v, s) for v, s in zip(values, ses if ses is not None else [None] * len(values))
             if v is not None and math.isfinite(v)]
    if len(pairs) < 2:
        return t_interval([v for v, _ in pairs], level=level)
    x = np.asarray([v for v, _ in pairs], dtype=float)
    within = [s * s for _, s in pairs if s is not None and math.isfinite(s)]
    floor = float(np.mean(within)) if within else 0.0  # seeds without an SE: the others' mean
    var = max(float(x.var(ddof=1)), floor) / len(x)
    half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * math.sqrt(var))
    if (seed_invariant(x) if invariant is None else invariant) and floor > 0:
        half = max(half, float(sps.norm.ppf(0.5 + level / 2) * math.sqrt(floor)))
    m = float(x.mean())
    return (m, m - half, m + half)


def seed_invariant(values: Sequence[float]) -> bool:
    """Whether two or more seeds all gave exactly the same value: a metric no seed moves."""
    x = np.asarray(values, dtype=float)
    return len(x) >= 2 and bool(np.all(x == x[0]))


MIN_SEEDS = 3  # below this the report draws no interval over seeds (t with 1 df: +-12.7 SE)


def bounded_seed_interval(values: Sequence[float], ses: Sequence[float | None] | None,
                          bounds: tuple[float | None, float | None], *, level: float = 0.95
                          ) -> tuple[float, float, float]:
    """:func:`seed_interval` for a metric that lives in ``bounds`` (a rate in [0, 1], a kappa
    in [-1, 1]), intersected with that range: two seeds' toxicity of 0.75 and 1.0 gave
    [-0.713, 2.463]. The true value lies in the range, so the intersection covers it exactly
    as often as the interval did: coverage is kept, and an interval away from the ends is
    unchanged. (A logit-scale interval also stays in range but needs the values held off the
    ends by an arbitrary margin, which then decides its width: a seed at exactly 1.0, common
    for a rate over a hundred prompts, stretched three seeds' interval to [0.00002, 0.99999].)"""
    mean, lo, hi = seed_interval(values, ses, level=level)
    low, high = bounds  # None: that side is open (a drop is >= 0, with no upper end)
    return (mean, max(lo, float(low)) if low is not None and math.isfinite(lo) else lo,
            min(hi, float(high)) if high is not None and math.isfinite(hi) else hi)


def report_interval(values: Sequence[float], ses: Sequence[float | None] | None,
                    bounds: tuple[float | None, float | None] | None, *, level: float = 0.95
                    ) -> tuple[float, float, float]:
    """The interval over seeds a report shows: none (nan) below :data:`MIN_SEEDS` seeds, where
    a t-interval is too wide to mean anything; within its range for a bounded metric
    (:func:`bounded_seed_interval`); else :func:`seed_interval`."""
    n = sum(v is not None and math.isfinite(v) for v in values)
    if n < MIN_SEEDS:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        return (float(np.mean(finite)) if finite else math.nan, math.nan, math.nan)
    if bounds is not None:
        return bounded_seed_interval(values, ses, bounds, level=level)
    return seed_interval(values, ses, level=level)


def pair_se(a: float | None, b: float | None) -> float | None:
    """The standard error of a difference of two independent estimates (None if either has
    none)."""
    return math.hypot(a, b) if a is not None and b is not None else None


def paired_seed_delta(a: Sequence[float], b: Sequence[float],
                      se_a: Sequence[float | None] | None = None,
                      se_b: Sequence[float | None] | None = None, *, level: float = 0.95
                      ) -> tuple[float, float, float]:
    """Mean of a - b over paired seeds, with :func:`seed_interval`'s floor: each difference
    carries both sides' evaluation noise (se_a^2 + se_b^2; an upper bound when the two share
    reference samples, which correlates them positively)."""
    n = len(a)
    se_a = list(se_a) if se_a is not None else [None] * n
    se_b = list(se_b) if se_b is not None else [None] * n
    ses = [pair_se(x, y) for x, y in zip(se_a, se_b, strict=True)]
    return seed_interval([x - y for x, y in zip(a, b, strict=True)], ses, level=level,
                         invariant=seed_invariant(a) and seed_invariant(b))


def cluster_bootstrap_se(stat, n_clusters: int, cluster_size: int, *, n_boot: int = 200,
                         seed: int = 0) -> float:
    """Bootstrap standard error of ``stat(rows)`` when rows come in ``n_clusters`` consecutive
    clusters of ``cluster_size`` (a prompt's samples): clusters are resampled whole, so the
    correlation within a prompt is kept. ``stat`` takes an index array into the rows."""
    if n_clusters < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    within = np.arange(cluster_size)
    vals = [stat((rng.integers(0, n_clusters, n_clusters)[:, None] * cluster_size
                  + within).ravel()) for _ in range(n_boot)]
    return float(np.std(vals, ddof=1))


def grouped_bootstrap_se(values: Sequence[float], groups: Sequence[str], *,
                         n_boot: int = N_BOOT, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of ``values`` when rows share a group (the pairs
    of one prompt), groups of any size resampled whole, so that rows of one prompt are not
    counted as independent evidence. The statistic is the mean over the resampled rows."""
    x = np.asarray(values, dtype=float)
    keys = list(dict.fromkeys(groups))
    if len(keys) < 2:
        return 0.0
    index = {k: i for i, k in enumerate(keys)}
    g = np.array([index[k] for k in groups])
    sums, counts = np.bincount(g, weights=x), np.bincount(g).astype(float)
    return float(np.std(group_bootstrap_means(sums, counts, n_boot=n_boot, seed=seed), ddof=1))


def group_bootstrap_means(sums: np.ndarray, counts: np.ndarray, *, n_boot: int = N_BOOT,
                          seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` resamples of whole groups (with replacement), each group given by
    its sum and count, drawn in chunks that keep the index array near two million entries
    (the same draws as one array would hold)."""
    rng = np.random.default_rng(seed)
    k = len(sums)
    chunk = max(1, 2_000_000 // k)
    out = []
    for start in range(0, n_boot, chunk):
        draws = rng.integers(0, k, size=(min(chunk, n_boot - start), k))
        out.append(sums[draws].sum(axis=1) / counts[draws].sum(axis=1))
    return np.concatenate(out)


def t_test_power(effect_size: float, n: int, *, level: float = 0.95) -> float:
    """Power of the two-sided one-sample t-test at ``1 - level`` with ``n`` observations
    against a true standardized mean ``effect_size``: P(|T'| > t_crit), T' noncentral t on
    n - 1 degrees of freedom with noncentrality effect_size * sqrt(n). Computed as the
    expectation over the chi-square denominator of two normal tails, on 4,000 midpoint
    quantiles: statsmodels' TTestPower and scipy's nct return nan at some large
    noncentralities (d = 10 at 10 seeds, d = 8 at 2), which the seed counts of large effects
    need, and statsmodels' solver then fails."""
    df = n - 1
    tc = float(sps.t.ppf(0.5 + level / 2, df))
    nc = abs(effect_size) * math.sqrt(n)
    u = (np.arange(4000) + 0.5) / 4000
    scale = tc * np.sqrt(sps.chi2.ppf(u, df) / df)
    return float(np.mean(sps.norm.cdf(nc - scale) + sps.norm.cdf(-nc - scale)))


def seeds_for_power(effect: float, sd: float, *, level: float = 0.95, power: float = 0.8,
                    most: int = 10**6) -> int | None:
    """The fewest seeds at which a one-sample (or paired) two-sided t-test at ``1 - level``
    detects a mean ``effect`` with per-seed standard deviation ``sd`` with probability at
    least ``power`` (:func:`t_test_power`, searched over whole seed counts): how many seeds an
    observed effect and spread would need to be resolved. None for a nil effect or one that
    needs more than ``most``; 2 when the spread is nil."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0:
        return None
    if sd <= 0:
        return 2
    d = abs(effect) / sd

    def enough(n: int) -> bool:
        return t_test_power(d, n, level=level) >= power
    lo, hi = 1, 2  # one seed has no t-test; search upward for a count that is enough
    while not enough(hi):
        if hi >= most:
            return None
        lo, hi = hi, min(2 * hi, most)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
