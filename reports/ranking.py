"""Who wins, and how sure we can be at this seed count: the rows ranked on one metric with
their intervals, every pair's paired difference (resolved when its interval excludes zero),
and each row's probability of ranking first under a bootstrap over seeds.

Many comparisons at once: with ten rows there are 45 pairs, and some would read as resolved at
95% by chance alone. So each pair carries its raw verdict and its verdict after Holm's
adjustment over all the ranking's pairs (the family-wise error rate held at 5%, Holm 1979);
the summary's best-versus-runner-up tests, one per headline metric, carry theirs after
Benjamini and Hochberg's (the false discovery rate among the metrics it crowns held at 5%,
1995). :func:`bench.resample.adjust` does both.

The bootstrap resamples seeds, not cells: one resample draws n seeds with replacement and gives
every row the same draw, since the cells of one seed share a world's SFT model and comparison
set and are compared at that seed. With 3 seeds there are only 10 distinct resamples, so the
probabilities are coarse; they say how often the order would change, not how large a gap is.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, TypedDict

import numpy as np

from bench.resample import adjust
from bench.stats import MIN_SEEDS
from reports.intervals import difference, mean_interval
from reports.records import bounds_of, null

PAIRS_ADJUST = "holm"  # the ranking's pairs: family-wise error
HEADLINE_ADJUST = "fdr_bh"  # the summary's metrics: false discovery rate

N_BOOT = 2000


class RankedRow(TypedDict):
    label: str
    method: str
    mean: float
    lo: float
    hi: float
    n_seeds: int
    p_first: float | None


class RankedPair(TypedDict):
    """Row ``a`` minus row ``b``, paired over the seeds (and prompts) they share: ``resolved``
    when its 95% interval excludes zero, ``resolved_holm`` when it does after Holm's
    adjustment over all the ranking's pairs (``p_holm``)."""
    a: str
    b: str
    delta: float
    lo: float
    hi: float
    p_value: float | None
    p_holm: float | None
    resolved: bool
    resolved_holm: bool
    n_seeds: int


class Ranking(TypedDict):
    """ranking.json: the rows best first, every resolved or unresolved pair, and the seeds
    the P(first) bootstrap resampled."""
    metric: str
    higher_is_better: bool
    rows: list[RankedRow]
    pairs: list[RankedPair]
    bootstrap_seeds: list[int]
    n_boot: int


class HeadlineRow(TypedDict):
    """Who wins on one metric: the best row, the runner-up and their paired difference."""
    metric: str
    higher_is_better: bool
    best: str
    mean: float
    lo: float
    hi: float
    runner_up: str | None
    runner_up_mean: float | None
    tied: list[str]
    delta: float | None
    d_lo: float | None
    d_hi: float | None
    p_value: float | None
    p_bh: float | None  # after Benjamini-Hochberg over the summary's metrics
    resolved: bool
    resolved_bh: bool
    n_seeds: int


def rank(groups: dict[str, list[dict[str, Any]]], metric: str, higher: bool = True,
         *, bounds: tuple[float | None, float | None] | None = None, n_boot: int = N_BOOT,
         seed: int = 0) -> Ranking | None:
    """``groups`` (row label -> its cells, one per seed) ranked on ``metric`` (the report's
    is the one an eval declares, :func:`reports.declared.ranking_metric`; its range
    ``bounds`` keeps intervals inside it); None when fewer than two rows carry it. Below
    ``MIN_SEEDS`` seeds no interval over seeds is drawn and no pair is resolved."""
    by_seed = {g: {r["seed"]: r for r in rs if r["metrics"].get(metric) is not None}
               for g, rs in groups.items()}
    by_seed = {g: s for g, s in by_seed.items() if s}
    if len(by_seed) < 2:
        return None
    rows = []
    for g, cells in by_seed.items():
        est = mean_interval(list(cells.values()), metric, bounds)
        rows.append({"label": g, "method": next(iter(cells.values()))["method"],
                     "mean": est.mean, "lo": est.lo, "hi": est.hi, "n_seeds": len(cells)})
    rows.sort(key=lambda r: -r["mean"] if higher else r["mean"])
    common = sorted(set.intersection(*(set(s) for s in by_seed.values())))
    p_first = first_probabilities(
        {g: [by_seed[g][s]["metrics"][metric] for s in common] for g in by_seed}, higher,
        n_boot=n_boot, seed=seed) if len(common) >= MIN_SEEDS else {}
    for r in rows:
        r["p_first"] = p_first.get(r["label"])
    pairs = []
    for a, b in itertools.combinations([r["label"] for r in rows], 2):
        shared = sorted(set(by_seed[a]) & set(by_seed[b]))
        if len(shared) < MIN_SEEDS:
            continue
        est = difference([by_seed[a][s] for s in shared], [by_seed[b][s] for s in shared],
                         metric)
        pairs.append({"a": a, "b": b, "delta": est.mean, "lo": est.lo, "hi": est.hi,
                      "p_value": est.p_value, "p_holm": None, "resolved": excludes_zero(est),
                      "resolved_holm": False, "n_seeds": len(shared)})
    adjusted, reject = adjust([p["p_value"] for p in pairs], PAIRS_ADJUST)
    for p, q, r in zip(pairs, adjusted, reject):
        p["p_holm"] = float(q) if math.isfinite(q) else None
        p["resolved_holm"] = bool(r) and p["resolved"]  # p < 0.05 where the interval excludes 0
    return {"metric": metric, "higher_is_better": higher, "rows": rows, "pairs": pairs,
            "bootstrap_seeds": common, "n_boot": n_boot}


def excludes_zero(est) -> bool:
    """An interval that lies wholly on one side of zero."""
    return bool(math.isfinite(est.lo) and (est.lo > 0 or est.hi < 0))


def first_probabilities(values: dict[str, list[float]], higher: bool = True, *,
                        n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float | None]:
    """P(each row has the best mean) over bootstrap resamples of the seeds (``values[g][i]``:
    row g at the i-th common seed; one draw of seeds shared by all rows). Rows tied for best in
    a resample share it equally. None for every row when fewer than two seeds are common."""
    labels = list(values)
    x = np.asarray([values[g] for g in labels], dtype=float)  # rows x seeds
    if x.shape[1] < 2:
        return {g: None for g in labels}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, x.shape[1], size=(n_boot, x.shape[1]))
    means = x[:, draws].mean(-1)  # rows x resamples
    best = means.max(0) if higher else means.min(0)
    top = np.isclose(means, best[None], rtol=0, atol=1e-12)
    share = (top / top.sum(0, keepdims=True)).mean(1)
    return {g: float(p) for g, p in zip(labels, share)}


def headline(groups: dict[str, list[dict[str, Any]]], directions: dict[str, bool | None],
             bounds: dict[str, tuple[float | None, float | None]], metrics: list[str]
             ) -> list[HeadlineRow]:
    """Who wins on what: for each headline metric (one an eval declares), the row with the best
    mean over seeds, its interval, the runner-up, and their paired difference over the seeds
    they share, resolved when its 95% interval excludes zero (never below ``MIN_SEEDS``
    shared seeds) in the best row's favour. Rows whose means tie exactly for best are all named
    and none wins. A cell whose value is fixed by construction (an A/A comparison: SFT's
    win-rate against itself, its KL to itself) is not in the running, nor is a descriptive
    metric (no better direction, so no best)."""
    out: list[HeadlineRow] = []
    for m in metrics:
        higher = directions[m]
        if higher is None:
            continue
        by_seed = {g: {r["seed"]: r for r in rs if r["metrics"].get(m) is not None
                       and math.isfinite(r["metrics"][m]) and null(r, m) is None}
                   for g, rs in groups.items()}
        stats = []
        for g, cells in by_seed.items():
            if cells:
                est = mean_interval(list(cells.values()), m, bounds_of(bounds, m))
                stats.append((est.mean, g, est.lo, est.hi))
        if len(stats) < 2:
            continue
        stats.sort(key=lambda s: -s[0] if higher else s[0])
        best = stats[0]
        tied = [s[1] for s in stats if s[0] == best[0]]
        second = next((s for s in stats if s[0] != best[0]), None)
        row: HeadlineRow = {
            "metric": m, "higher_is_better": higher, "best": best[1], "mean": best[0],
            "lo": best[2], "hi": best[3], "runner_up": second[1] if second else None,
            "runner_up_mean": second[0] if second else None,
            "tied": tied if len(tied) > 1 else [], "delta": None, "d_lo": None, "d_hi": None,
            "p_value": None, "p_bh": None, "resolved": False, "resolved_bh": False,
            "n_seeds": 0}
        if row["tied"] or second is None:
            out.append(row)
            continue
        shared = sorted(set(by_seed[best[1]]) & set(by_seed[second[1]]))
        row["n_seeds"] = len(shared)
        if len(shared) >= MIN_SEEDS:
            est = difference([by_seed[best[1]][s] for s in shared],
                             [by_seed[second[1]][s] for s in shared], m)
            # resolved only in the best row's favour: on the seeds they share, the runner-up
            # can be the better one (the best row's mean covers seeds the other lacks)
            favour = math.isfinite(est.lo) and (est.lo > 0 if higher else est.hi < 0)
            # a difference in the runner-up's favour is no evidence for the best row: it
            # enters the family as p = 1, so it cannot lower the others' threshold
            row.update(delta=est.mean, d_lo=est.lo, d_hi=est.hi,
                       p_value=est.p_value if (est.mean > 0) == higher else 1.0,
                       resolved=bool(favour))
        out.append(row)
    adjusted, reject = adjust([h["p_value"] for h in out], HEADLINE_ADJUST)
    for h, q, r in zip(out, adjusted, reject):
        h["p_bh"] = float(q) if math.isfinite(q) else None
        h["resolved_bh"] = bool(r) and h["resolved"]  # in the best row's favour, as above
    return out
