"""Intervals over training seeds and evaluation prompts together, for per-prompt values.

Every seed of a method scores the same evaluation prompts, so a cell's per-prompt values form a
crossed (seeds x prompts) matrix Y[s, p] = mu + a_s + b_p + e_sp: a_s a training seed's own effect
(its training run), b_p the prompt's difficulty, e_sp what is left (the seed-by-prompt
interaction and the sampling noise, which one value per cell cannot tell apart). The mean of
the matrix then varies, over new seeds and new prompts of the same kind, as

    var(mean) = var_seed / S + var_prompt / P + var_resid / (S * P),

which bench.stats' t-interval over seed means leaves incomplete (its population is these
prompts only). The functions here estimate that variance from the matrix by the ANOVA method of
moments (the quasi-F of a design with subjects and items crossed: Clark 1973; for
language-model evals, Miller 2024) in two components: the training-seed component, MS_seed / (S P)
on S - 1 degrees of freedom, and the prompt one, (MS_prompt - MS_resid) / (S P) on P - 1.
Two methods
scored on the same prompts share b_p, which a difference cancels: hence
:func:`paired_difference` beside :func:`unpaired_difference`.

Why each component at its own t quantile. The half-width is sqrt(t_{S-1}^2 v_seed +
t_{P-1}^2 v_prompt), Banerjee's (1960) interval for a sum of independently estimated
variances, whose coverage is at least nominal whatever their ratio (here up to the residual
share a seed term holds). One t on Satterthwaite's (1946) degrees of freedom from the
observed mean squares undercovers with three seeds when the two components are alike (0.91
to 0.94 in simulation at seed sd 0.05 to 0.2, prompt and residual sd 0.3): its degrees of
freedom grow just when the 2-df seed mean square is small by chance, the standard error then
too small. The component-wise interval covers 0.949 to 0.993 there at 0.90 to 1.41 times the
width of an interval drawn knowing the variances; its price is conservatism (up to 0.996)
where a three-seed term at the residual's scale meets a prompt term of its size.

Why not the bootstrap. The pigeonhole bootstrap (Owen 2007) resamples seeds and prompts
independently; it counts the residual share var_resid / (S P) up to three times (about 2.6
times with five seeds and fifty prompts), and its percentile interval with three to five seeds
takes normal quantiles where the seed mean square has two to four degrees of freedom, so it
undercovers badly just where seeds are few. The method-of-moments variance is unbiased and its
t quantile counts those few degrees of freedom.

The seed term floor. The seed term is estimated from the seed means' spread, on S - 1 degrees
of freedom; three seeds can agree by chance far more closely than the per-prompt noise alone
allows (the spread's expectation is at least var_resid / P). So the seed mean square is floored
at the residual mean square while keeping S - 1 degrees of freedom: the modified Knapp-Hartung
rule of bench.stats.seed_interval (Roever, Knapp and Friede 2015), with the residual's
precisely estimated variance as the floor. Under the component-wise t the floor no longer
decides coverage (0.97 to 0.98 without it where the seed variance is at most var_resid / P,
0.99 to 1.0 with it); it keeps any one interval from resting on seeds that agree by chance.

No spread. A constant matrix shows no variance, which is not the same as having none: its
interval and p-value are nan (so :func:`adjust` leaves it out) rather than zero width with
p = 0, unless the caller says the metric is not random (``deterministic``); values all at a
bound of a rate (every judgment agrees) get the exact binomial bound over the independent
units instead (Clopper and Pearson 1934).

Missing values (a prompt a seed could not score) are NaN; they are filled by the additive fit
of the rest (Yates 1933), and the residual loses one degree of freedom per filled cell.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from statsmodels.stats.multitest import multipletests

from bench.stats import group_bootstrap_means

Term = tuple[float, float]  # one contribution to var(mean) and its degrees of freedom
ADJUST_METHODS = ("holm", "fdr_bh")


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided interval and standard error.

    ``p_value`` is two-sided against the null the function names (0 for differences; None
    where none was asked for), the level at which the interval ends at the null, so that a 95%
    interval excludes the null exactly when p < 0.05. ``df``: the degrees of freedom of the
    one t as wide at this level (inf for a zero-width interval; nan for an exact binomial
    bound, whose ``se`` is nan too). ``over_seeds`` is False when the interval could not
    count the variance between seeds (one seed): it then generalizes over prompts only, for
    the seed at hand, and a report must say so."""

    estimate: float
    low: float
    high: float
    se: float
    p_value: float | None
    df: float = math.inf
    over_seeds: bool = True


@dataclass(frozen=True)
class _Layout:
    """One complete (seeds x prompts) matrix's means and mean squares."""

    n_seeds: int
    n_prompts: int
    mean: float
    cols: np.ndarray  # the prompt means over seeds
    ms_seed: float  # P * var(seed means): E = var_resid + P * var_seed
    ms_resid: float  # the interaction mean square: E = var_resid
    df_resid: int


def _matrix(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    y = np.asarray(values, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"expected a (seeds x prompts) matrix, got shape {y.shape}")
    return y


def _filled(y: np.ndarray) -> tuple[np.ndarray, int]:
    """The matrix without its empty rows (seeds that scored nothing), its NaN cells filled by
    the additive fit seed mean + prompt mean - grand mean of the completed matrix (iterated to
    a fixed point: the least-squares fill), and how many cells were filled. The caller has
    dropped the prompts no seed scored."""
    y = y[~np.all(np.isnan(y), axis=1)]
    missing = np.isnan(y)
    if not missing.any():
        return y, 0
    filled = np.where(missing, np.nanmean(y), y)
    for _ in range(500):
        fit = filled.mean(axis=1, keepdims=True) + filled.mean(axis=0) - filled.mean()
        step = np.where(missing, fit, y)
        done = np.max(np.abs(step - filled)) <= 1e-13 * (1.0 + np.max(np.abs(step)))
        filled = step
        if done:
            break
    return filled, int(missing.sum())


def _layout(values: np.ndarray) -> _Layout:
    """The means and mean squares, computed about the median value so that a constant matrix
    gives exact zeros (its mean is not a rounding away from the constant)."""
    y, n_missing = _filled(values)
    s, p = y.shape
    if not y.size:
        return _Layout(s, p, math.nan, np.zeros(p), 0.0, 0.0, 0)
    shift = float(np.median(y))
    y = y - shift
    rows, cols = y.mean(axis=1), y.mean(axis=0)
    mean = float(rows.mean())
    df_resid = max((s - 1) * (p - 1) - n_missing, 0)
    resid = y - rows[:, None] - cols[None, :] + mean
    ms_resid = float(np.sum(resid ** 2) / df_resid) if df_resid else 0.0
    ms_seed = float(p * rows.var(ddof=1)) if s > 1 else 0.0
    return _Layout(s, p, shift + mean, shift + cols, ms_seed, ms_resid, df_resid)


def _seed_term(g: _Layout) -> list[Term]:
    """var_seed / S + var_resid / (S P), from the seed means on S - 1 degrees of freedom, the
    seed mean square floored at the residual one (the module docstring says why)."""
    if g.n_seeds < 2:
        return []
    return [(max(g.ms_seed, g.ms_resid) / (g.n_seeds * g.n_prompts), g.n_seeds - 1.0)]


def _prompt_terms(contrast: np.ndarray, groups: Sequence[_Layout]) -> list[Term]:
    """var(contrast's prompt effect) / P: the spread of the per-prompt ``contrast`` (a prompt
    mean, or a difference of two methods' prompt means) less the residual share each group's
    seed term already holds, clipped at 0 (then no term). A group of one seed has no seed
    term, so its residual stays here."""
    p = len(contrast)
    if p < 2:
        return []
    terms = [(float(contrast.var(ddof=1)) / p, p - 1.0)]
    terms += [(-g.ms_resid / (g.n_seeds * p), float(g.df_resid)) for g in groups
              if g.n_seeds > 1 and g.df_resid > 0]
    return terms if sum(v for v, _ in terms) > 0 else []


def _components(groups: Sequence[_Layout], contrast: np.ndarray) -> list[list[Term]]:
    """Each group's seed term its own component (on S - 1 degrees of freedom), then the
    prompt terms together as one."""
    return [[t] for g in groups for t in _seed_term(g)] + [_prompt_terms(contrast, groups)]


def _satterthwaite(terms: list[Term]) -> Term:
    """One component's variance (the sum of its terms) and degrees of freedom: Satterthwaite's
    (1946) (sum v)^2 / sum(v^2 / df) over its positive terms. The negative ones (residual
    shares, on (S - 1)(P - 1) degrees of freedom) count as known: with them the count can
    fall towards 0 when the component nearly cancels, and a negligible component's t
    quantile then swamps the rest."""
    var, pos = sum(v for v, _ in terms), [(v, d) for v, d in terms if v > 0]
    spread = sum(v * v / d for v, d in pos)
    return var, sum(v for v, _ in pos) ** 2 / spread if spread > 0 else math.inf


def _half_width(parts: np.ndarray, dfs: np.ndarray, tail: float) -> float:
    """sqrt(sum_c t(df_c)^2 v_c): each component at its own t quantile (upper ``tail``)."""
    return math.sqrt(float(np.sum(parts * special.stdtrit(dfs, tail) ** 2)))


def _p_value(z: float, parts: np.ndarray, dfs: np.ndarray) -> float:
    """The two-sided p-value that inverts the interval: the 1 - level at which its half-width
    is the estimate's distance z * se from the null (root found in log(tail))."""
    var = float(parts.sum())
    if len(parts) == 1 or z == 0:
        return float(2 * special.stdtr(dfs[0], -z)) if len(parts) == 1 else 1.0

    def gap(log_tail: float) -> float:
        return _half_width(parts, dfs, math.exp(log_tail)) ** 2 - z * z * var
    if gap(-345.0) < 0:  # p under 1e-150
        return 0.0
    return 2 * math.exp(optimize.brentq(gap, -345.0, math.log(0.5), xtol=1e-13, rtol=1e-13))


def _interval(estimate: float, components: list[list[Term]], *, level: float,
              null: float | None, over_seeds: bool, deterministic: bool = False) -> Interval:
    """Estimate +- sqrt(sum_c t(df_c)^2 v_c) over the variance components (each a list of
    terms combined by Satterthwaite): Banerjee's (1960) component-wise t, whose coverage is at
    least nominal whatever the components' ratio (the module docstring says why not one t on
    the pooled Satterthwaite df). ``df`` reported: that of the one t with the same width at
    this level. No component: nothing estimable (nan). Components summing to 0: zero width if
    ``deterministic``, else nan (zero spread observed is not zero variance)."""
    components = [c for c in components if c]
    nan = math.nan
    if not components or not math.isfinite(estimate):
        return Interval(estimate, nan, nan, nan, None if null is None else nan, nan, over_seeds)
    parts, dfs = (np.array(x) for x in zip(*map(_satterthwaite, components)))
    parts, dfs = parts[parts > 0], dfs[parts > 0]  # a component of no variance adds nothing
    var = float(parts.sum())
    if var <= 0:
        if not deterministic:
            return Interval(estimate, nan, nan, nan, None if null is None else nan, nan,
                            over_seeds)
        p = None if null is None else float(estimate == null)
        return Interval(estimate, estimate, estimate, 0.0, p, math.inf, over_seeds)
    se, tail = math.sqrt(var), (1 - level) / 2
    half = _half_width(parts, dfs, tail)
    def excess(d: float) -> float:
        return float(special.stdtrit(d, tail)) ** 2 * var - half * half
    df = float(dfs.min())  # between the components' own (the one at the tie, by rounding)
    if excess(dfs.max()) >= 0:
        df = float(dfs.max())
    elif excess(df) > 0:
        df = optimize.brentq(excess, df, dfs.max(), xtol=1e-10)
    p = None if null is None else _p_value(abs(estimate - null) / se, parts, dfs)
    return Interval(estimate, estimate - half, estimate + half, se, p, df, over_seeds)


def _binomial_bound(estimate: float, n_units: int, bounds: tuple[float, float] | None, *,
                    level: float, null: float | None, over_seeds: bool) -> Interval | None:
    """Values that all sit at one of ``bounds`` (every judgment agrees, every prompt won):
    the exact Clopper-Pearson (1934) interval of n_units successes in n_units independent
    units, [lo + (hi - lo) ((1 - level) / 2)^(1 / n), hi] (mirrored at lo), and the p-value
    2 q^n of the same exact test, so they agree; se and df nan. None otherwise."""
    if bounds is None or estimate not in bounds or bounds[0] >= bounds[1] or n_units < 1:
        return None
    lo, hi = bounds
    reach = (hi - lo) * ((1 - level) / 2) ** (1 / n_units)
    low, high = (lo + reach, hi) if estimate == hi else (lo, hi - reach)
    p = None
    if null is not None:
        q = min(max((null - lo) / (hi - lo), 0.0), 1.0)
        p = min(1.0, 2 * (q if estimate == hi else 1 - q) ** n_units)
    return Interval(estimate, low, high, math.nan, p, math.nan, over_seeds)


def _scored(y: np.ndarray) -> np.ndarray:
    """The prompts (columns) at least one seed scored."""
    return ~np.all(np.isnan(y), axis=0)


def variance_components(values: Sequence[Sequence[float]] | np.ndarray
                        ) -> tuple[float, float, float]:
    """(var_seed, var_prompt, var_resid) of a (seeds x prompts) matrix by the ANOVA method of
    moments (expected mean squares of the two-way random-effects model), each clipped at 0:
    how much of the spread is training seeds, prompts, and their interaction with noise. nan
    for a component the matrix cannot estimate (one seed, one prompt)."""
    y = _matrix(values)
    g = _layout(y[:, _scored(y)])
    s, p = g.n_seeds, g.n_prompts
    ms_prompt = s * float(g.cols.var(ddof=1)) if p > 1 else math.nan
    resid = g.ms_resid if g.df_resid else math.nan
    seed = max((g.ms_seed - resid) / p, 0.0) if s > 1 and p > 1 else math.nan
    prompt = max((ms_prompt - resid) / s, 0.0) if s > 1 and p > 1 else math.nan
    return seed, prompt, resid


def two_level_mean(values: Sequence[Sequence[float]] | np.ndarray, *, level: float = 0.95,
                   null: float | None = None, bounds: tuple[float, float] | None = None,
                   deterministic: bool = False) -> Interval:
    """The mean of a (seeds x prompts) matrix, with an interval that generalizes to new
    training seeds AND new prompts of the same kind (var_seed / S + var_prompt / P +
    var_resid / (S P), estimated by the method of moments, the seed and the prompt component
    each at its own t quantile: see the module docstring). NaN marks a prompt a seed did not
    score; with NaN cells the estimate is the additive model's fit (the mean of the completed
    matrix, Yates 1933), not the mean of the seeds' own means over what each scored.

    A constant matrix has no spread to estimate a variance from. If it sits at one of
    ``bounds`` (pass (0, 1) for rates: every prompt won) the interval is the exact binomial
    bound of :func:`_binomial_bound` over the independent units: the fewer of seeds and
    prompts (either alone may carry all the variation), the prompts with one seed, the seeds
    with one prompt. Otherwise it is nan with a nan p-value (left out of :func:`adjust`'s
    family), unless ``deterministic`` says the metric is not random: then zero width.

    With one seed the seed variance cannot be estimated: the interval is then over prompts
    only (the seed's prompt values' standard error, t on P - 1 degrees of freedom), generalizing
    to new prompts for this trained model, and ``over_seeds`` is False. With one prompt it is
    the t-interval over seeds. ``null``: the value the p-value tests (0.5 for a win rate)."""
    y = _matrix(values)
    g = _layout(y[:, _scored(y)])
    if g.n_seeds == 0 or g.n_prompts == 0:
        return _interval(math.nan, [], level=level, null=null, over_seeds=False)
    units = g.n_prompts if g.n_seeds == 1 else min(g.n_seeds, g.n_prompts)
    flat = g.ms_seed == g.ms_resid == 0 and np.all(g.cols == g.mean)
    bound = _binomial_bound(g.mean, units, bounds, level=level, null=null,
                            over_seeds=g.n_seeds > 1) if flat and not deterministic else None
    return bound or _interval(g.mean, _components([g], g.cols), level=level, null=null,
                              over_seeds=g.n_seeds > 1, deterministic=deterministic)


def paired_difference(a: Sequence[Sequence[float]] | np.ndarray,
                      b: Sequence[Sequence[float]] | np.ndarray, *, paired_seeds: bool,
                      level: float = 0.95, deterministic: bool = False) -> Interval:
    """mean(a) - mean(b) for two (seeds x prompts) matrices over the same prompts in the same
    column order, with an interval over new seeds and new prompts and its p-value against 0.

    Paired by prompt: a prompt's shared difficulty cancels in the difference, so only the
    variance of the methods' prompt-by-method contrast enters (this is what makes it narrower
    than :func:`unpaired_difference` when prompts matter). With ``paired_seeds`` (row i of a
    and of b come from the same seed, e.g. two methods trained from the same seeded start) the
    difference matrix a - b is itself a crossed matrix and :func:`two_level_mean` of it is the
    answer. Otherwise the seeds of a and b are independent, seed counts may differ, and the
    variance is var_seed_a / S_a + var_seed_b / S_b + var(prompt contrast) / P + the two
    residual shares, each seed term at its own t quantile. A prompt missing from a whole side
    is dropped from both. No spread at all (every difference alike): nan, unless
    ``deterministic`` (see :func:`two_level_mean`)."""
    a, b = _matrix(a), _matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired by prompt needs the same prompts: {a.shape[1]} columns "
                         f"against {b.shape[1]}; use unpaired_difference")
    if paired_seeds:
        if a.shape != b.shape:
            raise ValueError(f"paired seeds need the same seeds: shapes {a.shape}, {b.shape}")
        return two_level_mean(a - b, level=level, null=0.0, deterministic=deterministic)
    shared = _scored(a) & _scored(b)
    ga, gb = _layout(a[:, shared]), _layout(b[:, shared])
    if min(ga.n_seeds, gb.n_seeds, ga.n_prompts) == 0:
        return _interval(math.nan, [], level=level, null=0.0, over_seeds=False)
    return _interval(ga.mean - gb.mean, _components([ga, gb], ga.cols - gb.cols), level=level,
                     null=0.0, over_seeds=min(ga.n_seeds, gb.n_seeds) > 1,
                     deterministic=deterministic)


def unpaired_difference(a: Sequence[Sequence[float]] | np.ndarray,
                        b: Sequence[Sequence[float]] | np.ndarray, *,
                        level: float = 0.95, deterministic: bool = False) -> Interval:
    """mean(a) - mean(b) for two (seeds x prompts) matrices that share nothing (different
    prompts, different prompt counts, different seeds): the two :func:`two_level_mean`
    variances add, each side's seed and prompt components at their own t quantiles; p-value
    against 0. The interval generalizes over new seeds and new prompts of each side's kind.
    Two constant sides: nan, unless ``deterministic``."""
    a, b = _matrix(a), _matrix(b)
    ga, gb = _layout(a[:, _scored(a)]), _layout(b[:, _scored(b)])
    if min(ga.n_seeds, gb.n_seeds, ga.n_prompts, gb.n_prompts) == 0:
        return _interval(math.nan, [], level=level, null=0.0, over_seeds=False)
    return _interval(ga.mean - gb.mean, _components([ga], ga.cols) + _components([gb], gb.cols),
                     level=level, null=0.0, over_seeds=min(ga.n_seeds, gb.n_seeds) > 1,
                     deterministic=deterministic)


def cluster_agreement(agree: Sequence[float], clusters: Sequence[Hashable], *,
                      level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                      null: float | None = None, bounds: tuple[float, float] | None = (0.0, 1.0),
                      deterministic: bool = False) -> Interval:
    """The mean of per-judgment agreements (0/1 or fractional) when judgments come in
    clusters, with an interval that generalizes to new clusters (new prompts) of the same kind.

    ``clusters`` names each judgment's top-level cluster: the prompt a judged pair belongs to.
    Nested designs (several pairs per prompt, several labelers per pair) pass the outermost id
    only: resampling the top level whole keeps every correlation nested inside it, which is
    valid whatever the inner structure (Davison and Hinkley 1997, 3.8; Field and Welsh 2007).
    The statistic is the mean over resampled judgments; its bootstrap variance is scaled by
    G / (G - 1) (G clusters: the correction that makes the bootstrap variance of a plain mean
    the usual s^2 / n, as CR1 does for cluster-robust errors, Cameron and Miller 2015), and
    the interval is the estimate +- t(G - 1) * SE, intersected with ``bounds`` (None: none),
    which keeps its coverage. t on G - 1 rather than percentiles: a few dozen clusters make
    percentile intervals too narrow, and the p-value against ``null`` then agrees with the
    interval exactly. Fewer than two clusters: no interval (nan). Every cluster's mean alike
    (no spread to resample): at one of ``bounds`` (every judgment agrees), the exact
    binomial bound over the G clusters (:func:`_binomial_bound`); elsewhere nan, unless
    ``deterministic`` (zero width)."""
    x = np.asarray(agree, dtype=float)
    if len(x) != len(clusters):
        raise ValueError(f"{len(x)} agreements but {len(clusters)} cluster ids")
    keep = np.isfinite(x)
    ids = [c for c, k in zip(clusters, keep) if k]
    index = {c: i for i, c in enumerate(dict.fromkeys(ids))}
    g = np.fromiter((index[c] for c in ids), dtype=int, count=len(ids))
    x, k = x[keep], len(index)
    estimate = float(x.mean()) if len(x) else math.nan
    if k < 2:
        return _interval(estimate, [], level=level, null=null, over_seeds=False)
    sums, counts = np.bincount(g, weights=x), np.bincount(g).astype(float)
    if np.all(np.abs(sums / counts - estimate) <= 1e-12 * max(1.0, abs(estimate))):
        flat = _binomial_bound(estimate, k, bounds, level=level, null=null, over_seeds=False)
        return flat if flat and not deterministic else _interval(
            estimate, [[(0.0, k - 1.0)]], level=level, null=null, over_seeds=False,
            deterministic=deterministic)
    means = group_bootstrap_means(sums, counts, n_boot=n_boot, seed=seed)
    var = float(means.var(ddof=1)) * k / (k - 1)
    out = _interval(estimate, [[(var, k - 1.0)]], level=level, null=null, over_seeds=False)
    if bounds is None or not math.isfinite(out.low):
        return out
    return Interval(out.estimate, max(out.low, bounds[0]), min(out.high, bounds[1]), out.se,
                    out.p_value, out.df, out.over_seeds)


def adjust(p_values: Sequence[float | None], method: str = "holm", *, alpha: float = 0.05
           ) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicity-adjusted p-values and rejections at ``alpha`` for one family of tests:
    "holm" controls the family-wise error rate (Holm 1979), "fdr_bh" the false discovery rate
    (Benjamini and Hochberg 1995), both by statsmodels' multipletests.

    A missing p-value (None or NaN: a comparison that could not be tested, such as one seed
    with no interval) is not a test: it is left out of the family, so it neither enlarges the
    others' adjustment nor is rejected, and its adjusted value stays NaN. The guarantee then
    holds for the tests actually made."""
    if method not in ADJUST_METHODS:
        raise ValueError(f"method must be one of {ADJUST_METHODS}, not {method!r}")
    p = np.array([math.nan if v is None else v for v in p_values], dtype=float)
    adjusted = np.full(p.shape, math.nan)
    reject = np.zeros(p.shape, dtype=bool)
    tested = np.isfinite(p)
    if tested.any():
        reject[tested], adjusted[tested], _, _ = multipletests(p[tested], alpha=alpha,
                                                                method=method)
    return adjusted, reject
