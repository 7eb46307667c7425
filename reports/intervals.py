"""The report's intervals and paired differences, over training seeds and evaluation prompts.

Where every cell of a row stores the per-prompt values of a metric (``evals.NAME.per_prompt``,
:mod:`bench.record`) and the row has at least :data:`bench.stats.MIN_SEEDS` seeds, the row's
interval is :func:`bench.resample.two_level_mean` of its (seeds x prompts) matrix: it
generalizes to new training seeds and new prompts of the same kind. Two rows that scored the
same prompts are compared by :func:`bench.resample.paired_difference`, paired by seed and by
prompt (a prompt's shared difficulty cancels).

Where per-prompt values are missing (a statistic that is not a mean over prompts, such as
Fleiss' kappa or the length-controlled win rate, or a cell written before cells stored them),
or two sides did not score the same prompts (a slice against its whole), the interval is
:func:`bench.stats.report_interval` over the seeds' values, floored by each seed's evaluation
noise: it generalizes to new training seeds on these prompts only. Every estimate says which
population it speaks for (:data:`POPULATIONS`).

Agreement metrics store one value per judgment under its prompt's id (a prompt's pairs, and
every labeler's label on a pair, share it). Their mean is a ratio of sums over prompts; each
seed's row is its linearization (:func:`_row`), whose row mean is the seed's metric, so prompts
are the units resampled and the interval is around the metric the cell reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from bench.record import unpack_per_prompt
from bench.resample import Interval, paired_difference, two_level_mean, variance_components
from bench.stats import MIN_SEEDS, paired_seed_delta, report_interval
from reports.records import Record, null, se

Population = Literal["seeds and prompts", "seeds"]
POPULATIONS: dict[str, str] = {
    "seeds and prompts": "new training seeds and new prompts of the same kind",
    "seeds": "new training seeds, on these prompts only",
}


@dataclass(frozen=True)
class Estimate:
    """A mean or a difference with its 95% interval, the two-sided p-value against the
    null it was tested at (None where none was), and the population it generalizes to."""

    mean: float
    lo: float
    hi: float
    p_value: float | None
    population: Population
    # over seeds and prompts: the variance of one seed's mean over these prompts (what more
    # seeds average away) and the prompts' share of the estimate's variance (what they do not)
    seed_var: float | None = None
    prompt_var: float | None = None


@dataclass(frozen=True)
class Judged:
    """A cell's values of one metric by prompt: each prompt's sum of values and how many it
    holds (one per prompt for most metrics; a prompt's judgments for agreement)."""

    sums: dict[str, float]
    counts: dict[str, int]

    @property
    def clustered(self) -> bool:
        return any(n > 1 for n in self.counts.values())


_CACHE: dict[int, tuple[Record, dict]] = {}


def per_prompt(r: Record, metric: str) -> Judged | None:
    """The cell's values of ``metric`` by prompt id, or None where it stores none."""
    hit = _CACHE.get(id(r))
    if hit is None or hit[0] is not r:  # keyed by identity: records are read once per report
        if len(_CACHE) > 4096:
            _CACHE.clear()
        hit = _CACHE[id(r)] = (r, {})
    if metric not in hit[1]:
        ev, _, name = metric.partition(".")
        if (ev,) not in hit[1]:  # an eval's values are unpacked (and validated) once
            hit[1][ev,] = unpack_per_prompt(
                ((r.get("evals") or {}).get(ev) or {}).get("per_prompt"))
        pp = hit[1][ev,].get(name)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for p, v in zip(pp.prompts, pp.values) if pp else ():
            if math.isfinite(v):
                sums[p] = sums.get(p, 0.0) + v
                counts[p] = counts.get(p, 0) + 1
        hit[1][metric] = Judged(sums, counts) if counts else None
    return hit[1][metric]


def _row(j: Judged, ids: list[str], clustered: bool) -> list[float]:
    """One seed's row of the matrix over ``ids``. One value per prompt: the values, NaN where
    the seed scored none. Judgments clustered in prompts: the mean over judgments is a ratio
    of sums, and its linearization (Cochran 1977, 6.3) m + (y_p - m n_p) / n-bar has the
    seed's judgment-weighted mean m as its row mean and the ratio's variance over prompts;
    a prompt with no counted judgment is part of the sample (y_p = n_p = 0)."""
    if not clustered:
        return [j.sums[p] if p in j.counts else math.nan for p in ids]
    total = sum(j.counts.values())
    m, nbar = sum(j.sums.values()) / total, total / len(ids)
    return [m + (j.sums.get(p, 0.0) - m * j.counts.get(p, 0)) / nbar for p in ids]


def _matrix(cells: list[Record], metric: str) -> tuple[np.ndarray, list[str]] | None:
    """The cells' (seeds x prompts) matrix of ``metric`` over every prompt any cell scored
    (in order of first appearance), and those prompts; None when a cell stores no per-prompt
    values for it."""
    cols = [per_prompt(r, metric) for r in cells]
    if not cells or any(c is None for c in cols):
        return None
    ids = list(dict.fromkeys(p for c in cols for p in c.counts))
    clustered = any(c.clustered for c in cols)
    return np.array([_row(c, ids, clustered) for c in cols], dtype=float), ids


def _null(cells: list[Record], metric: str) -> float | None:
    """The value every cell's eval says the metric takes by construction (an A/A
    comparison's 0.5), or None where they declare none (or disagree)."""
    nulls = {null(r, metric) for r in cells}
    return nulls.pop() if len(nulls) == 1 else None


def _fixed(cells: list[Record], metric: str) -> bool:
    """Every cell sits exactly at the value its eval says the metric takes by construction
    (a model's KL to itself): no randomness to put an interval on."""
    at = _null(cells, metric)
    return at is not None and all(r["metrics"][metric] == at for r in cells)


def _shown(centre: float, iv: Interval, null: float | None,
           bounds: tuple[float | None, float | None] | None) -> tuple[float, float, float | None]:
    """The interval moved to the reported ``centre`` (the mean of the cells' own values, which
    differs from the matrix's where it filled a missing value), kept inside the metric's
    range, and its p-value against ``null`` tested at that centre on the interval's own t,
    so that it is below 0.05 exactly when the interval (before the range cut) excludes the
    null."""
    lo, hi = centre - (iv.estimate - iv.low), centre + (iv.high - iv.estimate)
    if bounds is not None:
        lo = lo if bounds[0] is None else max(lo, bounds[0])
        hi = hi if bounds[1] is None else min(hi, bounds[1])
    p = iv.p_value
    if null is not None and math.isfinite(iv.se) and iv.se > 0:
        z = abs(centre - null) / iv.se
        p = float(2 * (sps.norm.sf(z) if math.isinf(iv.df) else sps.t.sf(z, iv.df)))
    return lo, hi, p


def _split(y: np.ndarray) -> tuple[float, float]:
    """(seed_var, prompt_var) of a (seeds x prompts) matrix (:class:`Estimate`)."""
    seed, prompt, resid = variance_components(y)
    n_prompts = y.shape[1]
    return seed + resid / n_prompts, prompt / n_prompts


def mean_interval(cells: list[Record], metric: str,
                  bounds: tuple[float | None, float | None] | None) -> Estimate:
    """A row's mean of ``metric`` over its cells (one per seed) and its 95% interval; the
    p-value tests the value the eval declares by construction (an A/A comparison's 0.5)
    where it declares one. Below :data:`bench.stats.MIN_SEEDS` seeds, as where no cell
    stores per-prompt values, the interval is over seeds (none for one seed)."""
    mean = float(np.mean([r["metrics"][metric] for r in cells])) if cells else math.nan
    got = _matrix(cells, metric) if len(cells) >= MIN_SEEDS else None
    if got is None:
        m, lo, hi = report_interval([r["metrics"][metric] for r in cells],
                                    [se(r, metric) for r in cells], bounds)
        return Estimate(m, lo, hi, None, "seeds")
    at = _null(cells, metric)
    closed = bounds if bounds and None not in bounds else None
    iv = two_level_mean(got[0], null=at, bounds=closed, deterministic=_fixed(cells, metric))
    return Estimate(mean, *_shown(mean, iv, at, bounds), "seeds and prompts", *_split(got[0]))


def _t_p_value(d: float, lo: float, hi: float, n: int) -> float | None:
    """The two-sided p-value against 0 of a symmetric 95% t-interval over ``n`` seeds (the
    level at which it would end at 0), None where it has no width."""
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return None
    scale = (hi - lo) / 2 / sps.t.ppf(0.975, n - 1)
    return float(2 * sps.t.sf(abs(d) / scale, n - 1))


def difference(a: list[Record], b: list[Record], metric: str, metric_b: str | None = None
               ) -> Estimate:
    """Row ``a``'s ``metric`` minus row ``b``'s ``metric_b`` (default the same), cell
    ``a[i]`` paired with ``b[i]`` (the same seed), with its p-value against 0: paired by seed
    and by prompt where both sides scored the same prompts over at least
    :data:`bench.stats.MIN_SEEDS` seeds; otherwise (other prompts, a slice against its whole,
    no per-prompt values, fewer seeds) :func:`bench.stats.paired_seed_delta` over the seeds,
    on these prompts only."""
    mb_name = metric_b or metric
    diff = float(np.mean([x["metrics"][metric] - y["metrics"][mb_name] for x, y in zip(a, b)]))
    enough = len(a) >= MIN_SEEDS
    ma, mb = (_matrix(a, metric), _matrix(b, mb_name)) if enough else (None, None)
    if not (ma and mb and set(ma[1]) == set(mb[1])):
        d, lo, hi = paired_seed_delta([x["metrics"][metric] for x in a],
                                      [y["metrics"][mb_name] for y in b],
                                      [se(x, metric) for x in a], [se(y, mb_name) for y in b])
        return Estimate(d, lo, hi, _t_p_value(d, lo, hi, len(a)), "seeds")
    column = {p: i for i, p in enumerate(mb[1])}
    yb = mb[0][:, [column[p] for p in ma[1]]]  # b's columns in a's prompt order
    iv = paired_difference(ma[0], yb, paired_seeds=True,
                           deterministic=_fixed(a, metric) and _fixed(b, mb_name))
    return Estimate(diff, *_shown(diff, iv, 0.0, None), "seeds and prompts", *_split(ma[0] - yb))
