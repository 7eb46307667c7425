"""The report's intervals and paired differences, over training seeds and evaluation prompts.

Where every cell of a row stores the per-prompt values of a metric (``evals.NAME.per_prompt``,
:mod:`bench.record`), the row's interval is :func:`bench.resample.two_level_mean` of its
(seeds x prompts) matrix: it generalizes to new training seeds and new prompts of the same
kind. Two rows that scored the same prompts at the same seeds are compared by
:func:`bench.resample.paired_difference`, paired by seed and by prompt (a prompt's shared
difficulty cancels); rows that share prompts but not seeds pair by prompt only.

Where per-prompt values are missing (a slice such as ``mc1.Adversarial``, a statistic that is
not a mean over prompts such as Fleiss' kappa or the length-controlled win rate, a cell
written before cells stored them), the interval is :func:`bench.stats.report_interval` over the
seeds' values, floored by each seed's evaluation noise: it generalizes to new training seeds
on these prompts only. Every estimate says which population it speaks for
(:data:`POPULATIONS`).

Agreement metrics store one value per judgment under its prompt's id (a prompt's pairs, and
every labeler's label on a pair, share it): a cell's column for a prompt is the mean of that
prompt's judgments, so prompts are the units resampled. Where prompts hold different numbers
of judgments the mean of those columns differs from the metric (the mean over judgments); the
report keeps the metric's mean and moves the interval with it (same half-widths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from bench.record import unpack_per_prompt
from bench.resample import Interval, paired_difference, two_level_mean
from bench.stats import paired_seed_delta, report_interval
from reports.records import Record, null, se

Population = Literal["seeds and prompts", "prompts", "seeds"]
POPULATIONS: dict[str, str] = {
    "seeds and prompts": "new training seeds and new prompts of the same kind",
    "prompts": "new prompts of the same kind, for the one trained seed",
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


_CACHE: dict[int, tuple[Record, dict]] = {}


def per_prompt(r: Record, metric: str) -> dict[str, float] | None:
    """Prompt id -> the cell's value of ``metric`` there (judgments under one prompt
    averaged), or None where the cell does not store them."""
    ev, _, name = metric.partition(".")
    hit = _CACHE.get(id(r))
    if hit is None or hit[0] is not r:  # keyed by identity: records are read once per report
        if len(_CACHE) > 4096:
            _CACHE.clear()
        hit = _CACHE[id(r)] = (r, {})
    columns = hit[1]
    if ev not in columns:
        columns[ev] = unpack_per_prompt(((r.get("evals") or {}).get(ev) or {}).get("per_prompt"))
    pp = columns[ev].get(name)
    if pp is None or not pp.values:
        return None
    sums: dict[str, list[float]] = {}
    for p, v in zip(pp.prompts, pp.values):
        if math.isfinite(v):
            sums.setdefault(p, []).append(v)
    return {p: sum(v) / len(v) for p, v in sums.items()}


def _matrix(cells: list[Record], metric: str, prompts: list[str] | None = None
            ) -> tuple[np.ndarray, list[str]] | None:
    """The cells' (seeds x prompts) matrix of ``metric`` over ``prompts`` (default: every
    prompt any cell scored, in order of first appearance; NaN where a cell did not score
    one), or None when a cell stores no per-prompt values for it."""
    cols = [per_prompt(r, metric) for r in cells]
    if not cells or any(c is None for c in cols):
        return None
    ids = prompts if prompts is not None else list(dict.fromkeys(p for c in cols for p in c))
    return np.array([[c.get(p, math.nan) for p in ids] for c in cols], dtype=float), ids


def _fixed(cells: list[Record], metric: str) -> bool:
    """Every cell sits exactly at the value its eval says the metric takes by construction
    (a model's KL to itself): no randomness to put an interval on."""
    nulls = {null(r, metric) for r in cells}
    return len(nulls) == 1 and None not in nulls and all(
        r["metrics"][metric] == next(iter(nulls)) for r in cells)


def _recentred(mean: float, iv: Interval, bounds: tuple[float | None, float | None] | None
               ) -> tuple[float, float]:
    """The interval moved to the reported mean, kept inside the metric's range."""
    lo, hi = mean - (iv.estimate - iv.low), mean + (iv.high - iv.estimate)
    if bounds is not None:
        lo = lo if bounds[0] is None else max(lo, bounds[0])
        hi = hi if bounds[1] is None else min(hi, bounds[1])
    return lo, hi


def mean_interval(cells: list[Record], metric: str,
                  bounds: tuple[float | None, float | None] | None) -> Estimate:
    """A row's mean of ``metric`` over its cells (one per seed) and its 95% interval; the
    p-value tests the value the eval declares by construction (an A/A comparison's 0.5)
    where it declares one."""
    mean = float(np.mean([r["metrics"][metric] for r in cells])) if cells else math.nan
    got = _matrix(cells, metric)
    if got is None:
        m, lo, hi = report_interval([r["metrics"][metric] for r in cells],
                                    [se(r, metric) for r in cells], bounds)
        return Estimate(m, lo, hi, None, "seeds")
    nulls = {null(r, metric) for r in cells}
    at = nulls.pop() if len(nulls) == 1 else None
    closed = bounds if bounds and None not in bounds else None
    iv = two_level_mean(got[0], null=at, bounds=closed, deterministic=_fixed(cells, metric))
    lo, hi = _recentred(mean, iv, bounds)
    return Estimate(mean, lo, hi, iv.p_value, "seeds and prompts" if iv.over_seeds else "prompts")


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
    ``a[i]`` paired with ``b[i]`` (the same seed): paired by seed and by prompt over the
    prompts both scored, with its p-value against 0. Without per-prompt values,
    :func:`bench.stats.paired_seed_delta` over the seeds (these prompts only)."""
    mb_name = metric_b or metric
    diff = float(np.mean([x["metrics"][metric] - y["metrics"][mb_name] for x, y in zip(a, b)]))
    ma, mb = _matrix(a, metric), _matrix(b, mb_name)
    shared = [p for p in ma[1] if p in set(mb[1])] if ma and mb else []
    if not shared:
        d, lo, hi = paired_seed_delta([x["metrics"][metric] for x in a],
                                      [y["metrics"][mb_name] for y in b],
                                      [se(x, metric) for x in a], [se(y, mb_name) for y in b])
        return Estimate(d, lo, hi, _t_p_value(d, lo, hi, len(a)), "seeds")
    ya, yb = _matrix(a, metric, shared)[0], _matrix(b, mb_name, shared)[0]
    iv = paired_difference(ya, yb, paired_seeds=True,
                           deterministic=_fixed(a, metric) and _fixed(b, mb_name))
    lo, hi = _recentred(diff, iv, None)
    return Estimate(diff, lo, hi, iv.p_value,
                    "seeds and prompts" if iv.over_seeds else "prompts")
