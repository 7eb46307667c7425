"""Who wins, and how sure we can be at this seed count: the rows ranked on one metric with
their intervals, every pair's paired difference (resolved when its interval excludes zero),
and each row's probability of ranking first under a bootstrap over seeds.

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

from bench.stats import MIN_SEEDS, paired_seed_delta, report_interval
from reports.records import bounds_of, null, se

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
    """Row ``a`` minus row ``b``, paired over the seeds they share."""
    a: str
    b: str
    delta: float
    lo: float
    hi: float
    resolved: bool
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
    resolved: bool
    n_seeds: int


def rank(groups: dict[str, list[dict[str, Any]]], metric: str, higher: bool = True,
         *, bounds: tuple[float | None, float | None] | None = None, n_boot: int = N_BOOT,
         seed: int = 0) -> Ranking | None:
    """``groups`` (row label -> its cells, one per seed) ranked on ``metric`` (the report's
    is the one an eval declares, :func:`reports.declared.ranking_metric`; its range
    ``bounds`` keeps intervals inside it); None when fewer than two rows carry it. Below
    ``MIN_SEEDS`` seeds no interval is drawn and no pair is resolved."""
    by_seed = {g: {r["seed"]: r for r in rs if r["metrics"].get(metric) is not None}
               for g, rs in groups.items()}
    by_seed = {g: s for g, s in by_seed.items() if s}
    if len(by_seed) < 2:
        return None
    rows = []
    for g, cells in by_seed.items():
        vals = [c["metrics"][metric] for c in cells.values()]
        mean, lo, hi = report_interval(vals, [se(c, metric) for c in cells.values()], bounds)
        rows.append({"label": g, "method": next(iter(cells.values()))["method"], "mean": mean,
                     "lo": lo, "hi": hi, "n_seeds": len(cells)})
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
        ca, cb = [by_seed[a][s] for s in shared], [by_seed[b][s] for s in shared]
        d, lo, hi = paired_seed_delta([c["metrics"][metric] for c in ca],
                                      [c["metrics"][metric] for c in cb],
                                      [se(c, metric) for c in ca], [se(c, metric) for c in cb])
        resolved = math.isfinite(lo) and (lo > 0 or hi < 0)
        pairs.append({"a": a, "b": b, "delta": d, "lo": lo, "hi": hi, "resolved": resolved,
                      "n_seeds": len(shared)})
    return {"metric": metric, "higher_is_better": higher, "rows": rows, "pairs": pairs,
            "bootstrap_seeds": common, "n_boot": n_boot}


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
                vals = [c["metrics"][m] for c in cells.values()]
                mean, lo, hi = report_interval(vals, [se(c, m) for c in cells.values()],
                                               bounds_of(bounds, m))
                stats.append((mean, g, lo, hi))
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
            "resolved": False, "n_seeds": 0}
        if row["tied"] or second is None:
            out.append(row)
            continue
        shared = sorted(set(by_seed[best[1]]) & set(by_seed[second[1]]))
        row["n_seeds"] = len(shared)
        if len(shared) >= MIN_SEEDS:
            a = [by_seed[best[1]][s] for s in shared]
            b = [by_seed[second[1]][s] for s in shared]
            d, lo, hi = paired_seed_delta([c["metrics"][m] for c in a],
                                          [c["metrics"][m] for c in b],
                                          [se(c, m) for c in a], [se(c, m) for c in b])
            # resolved only in the best row's favour: on the seeds they share, the runner-up
            # can be the better one (the best row's mean covers seeds the other lacks)
            row.update(delta=d, d_lo=lo, d_hi=hi,
                       resolved=bool(math.isfinite(lo) and (lo > 0 if higher else hi < 0)))
        out.append(row)
    return out
