"""Intervals over training seeds and evaluation prompts together, for per-prompt values.

Every seed of a method scores the same evaluation prompts, so a cell's per-prompt values form a
crossed (seeds x prompts) matrix Y[s, p] = mu + a_s + b_p + e_sp: a_s the seed's own effect
(its training run), b_p the prompt's difficulty, e_sp what is left (the seed-by-prompt
interaction and the sampling noise, which one value per cell cannot tell apart). The mean of
the matrix then varies, over new seeds and new prompts of the same kind, as

    var(mean) = var_seed / S + var_prompt / P + var_resid / (S * P),

which bench.stats' t-interval over seed means leaves incomplete (its population is these
prompts only). The functions here estimate that variance from the matrix by the ANOVA method of
moments and draw a Student-t interval on Satterthwaite's degrees of freedom (Satterthwaite
1946): the quasi-F of a design with subjects and items crossed (Clark 1973; for language-model
evals, Miller 2024). Two methods scored on the same prompts share b_p, which a difference
cancels: hence :func:`paired_difference` beside :func:`unpaired_difference`.

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
precisely estimated variance as the floor. In simulation (tests/test_coverage.py), without the
floor, or with the floor's own degrees of freedom, coverage of a 95% interval fell to 0.93 with
three seeds and 200 prompts when the seed variance was a few times the residual share; with it,
coverage was 0.95 to 0.97 wherever seeds or prompts dominate, and conservative (0.98 to 1.0)
when the seed variance is no larger than var_resid / P: the price of never drawing a near-zero
interval from seeds that agree by chance.

Missing values (a prompt a seed could not score) are NaN; they are filled by the additive fit
of the rest (Yates 1933), and the residual loses one degree of freedom per filled cell.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

Term = tuple[float, float]  # one contribution to var(mean) and its degrees of freedom
ADJUST_METHODS = ("holm", "fdr_bh")


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided interval and standard error.

    ``p_value`` is two-sided against the null the function names (0 for differences; None
    where none was asked for), on the same t distribution as the interval, so that a 95%
    interval excludes the null exactly when p < 0.05. ``df`` is the t distribution's degrees of
    freedom (inf for a zero-width interval). ``over_seeds`` is False when the interval could not
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


def _interval(estimate: float, terms: list[Term], *, level: float, null: float | None,
              over_seeds: bool) -> Interval:
    """Estimate +- t(df) * sqrt(sum of terms), df by Satterthwaite (1946): (sum v)^2 /
    sum(v^2 / df). No term at all: nothing estimable (nan); terms summing to 0: zero width."""
    if not terms or not math.isfinite(estimate):
        nan = math.nan
        return Interval(estimate, nan, nan, nan, None if null is None else nan, nan, over_seeds)
    var = sum(v for v, _ in terms)
    if var <= 0:
        p = None if null is None else float(estimate == null)
        return Interval(estimate, estimate, estimate, 0.0, p, math.inf, over_seeds)
    df = var ** 2 / sum(v * v / d for v, d in terms)
    se = math.sqrt(var)
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    p = None if null is None else float(2 * sps.t.sf(abs(estimate - null) / se, df))
    return Interval(estimate, estimate - half, estimate + half, se, p, df, over_seeds)


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
                   null: float | None = None) -> Interval:
    """The mean of a (seeds x prompts) matrix, with an interval that generalizes to new
    training seeds AND new prompts of the same kind (var_seed / S + var_prompt / P +
    var_resid / (S P), estimated by the method of moments, Student-t on Satterthwaite's
    degrees of freedom: see the module docstring). NaN marks a prompt a seed did not score.

    With one seed the seed variance cannot be estimated: the interval is then over prompts
    only (the seed's prompt values' standard error, t on P - 1 degrees of freedom), generalizing
    to new prompts for this trained model, and ``over_seeds`` is False. With one prompt it is
    the t-interval over seeds. ``null``: the value the p-value tests (0.5 for a win rate)."""
    y = _matrix(values)
    g = _layout(y[:, _scored(y)])
    if g.n_seeds == 0 or g.n_prompts == 0:
        return _interval(math.nan, [], level=level, null=null, over_seeds=False)
    terms = _seed_term(g) + _prompt_terms(g.cols, [g])
    return _interval(g.mean, terms, level=level, null=null, over_seeds=g.n_seeds > 1)


def paired_difference(a: Sequence[Sequence[float]] | np.ndarray,
                      b: Sequence[Sequence[float]] | np.ndarray, *, paired_seeds: bool,
                      level: float = 0.95) -> Interval:
    """mean(a) - mean(b) for two (seeds x prompts) matrices over the same prompts in the same
    column order, with an interval over new seeds and new prompts and its p-value against 0.

    Paired by prompt: a prompt's shared difficulty cancels in the difference, so only the
    variance of the methods' prompt-by-method contrast enters (this is what makes it narrower
    than :func:`unpaired_difference` when prompts matter). With ``paired_seeds`` (row i of a
    and of b come from the same seed, e.g. two methods trained from the same seeded start) the
    difference matrix a - b is itself a crossed matrix and :func:`two_level_mean` of it is the
    answer. Otherwise the seeds of a and b are independent, seed counts may differ, and the
    variance is var_seed_a / S_a + var_seed_b / S_b + var(prompt contrast) / P + the two
    residual shares (a Welch-Satterthwaite interval; Satterthwaite 1946). A prompt missing
    from a whole side is dropped from both."""
    a, b = _matrix(a), _matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired by prompt needs the same prompts: {a.shape[1]} columns "
                         f"against {b.shape[1]}; use unpaired_difference")
    if paired_seeds:
        if a.shape != b.shape:
            raise ValueError(f"paired seeds need the same seeds: shapes {a.shape}, {b.shape}")
        return two_level_mean(a - b, level=level, null=0.0)
    shared = _scored(a) & _scored(b)
    ga, gb = _layout(a[:, shared]), _layout(b[:, shared])
    if min(ga.n_seeds, gb.n_seeds, ga.n_prompts) == 0:
        return _interval(math.nan, [], level=level, null=0.0, over_seeds=False)
    terms = _seed_term(ga) + _seed_term(gb) + _prompt_terms(ga.cols - gb.cols, [ga, gb])
    return _interval(ga.mean - gb.mean, terms, level=level, null=0.0,
                     over_seeds=min(ga.n_seeds, gb.n_seeds) > 1)


def unpaired_difference(a: Sequence[Sequence[float]] | np.ndarray,
                        b: Sequence[Sequence[float]] | np.ndarray, *,
                        level: float = 0.95) -> Interval:
    """mean(a) - mean(b) for two (seeds x prompts) matrices that share nothing (different
    prompts, different prompt counts, different seeds): the two :func:`two_level_mean`
    variances add, with Welch-Satterthwaite degrees of freedom; p-value against 0. The
    interval generalizes over new seeds and new prompts of each side's kind. When a side of
    three seeds whose variance matters meets larger terms, Welch-Satterthwaite is slightly
    liberal (0.946 for a nominal 0.95 in simulation)."""
    a, b = _matrix(a), _matrix(b)
    ga, gb = _layout(a[:, _scored(a)]), _layout(b[:, _scored(b)])
    if min(ga.n_seeds, gb.n_seeds, ga.n_prompts, gb.n_prompts) == 0:
        return _interval(math.nan, [], level=level, null=0.0, over_seeds=False)
    terms = (_seed_term(ga) + _prompt_terms(ga.cols, [ga])
             + _seed_term(gb) + _prompt_terms(gb.cols, [gb]))
    return _interval(ga.mean - gb.mean, terms, level=level, null=0.0,
                     over_seeds=min(ga.n_seeds, gb.n_seeds) > 1)


def _cluster_bootstrap_means(sums: np.ndarray, counts: np.ndarray, n_boot: int,
                             seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples of whole clusters (with replacement), in chunks that keep
    the index array near two million entries."""
    rng = np.random.default_rng(seed)
    k = len(sums)
    chunk = max(1, 2_000_000 // k)
    out = []
    for start in range(0, n_boot, chunk):
        draws = rng.integers(0, k, size=(min(chunk, n_boot - start), k))
        out.append(sums[draws].sum(axis=1) / counts[draws].sum(axis=1))
    return np.concatenate(out)


def cluster_agreement(agree: Sequence[float], clusters: Sequence[Hashable], *,
                      level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                      null: float | None = None,
                      bounds: tuple[float, float] | None = (0.0, 1.0)) -> Interval:
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
    interval exactly. Fewer than two clusters: no interval (nan)."""
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
    means = _cluster_bootstrap_means(sums, counts, n_boot, seed)
    var = float(means.var(ddof=1)) * k / (k - 1)
    out = _interval(estimate, [(var, k - 1.0)], level=level, null=null, over_seeds=False)
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
