"""The matrix's claims (``[[claims]]`` as OUT/matrix.toml stores them,
:class:`reports.stored.StoredClaim`) tested on its own stored results: one finding per claim,
with the measured effect, its 95% interval over seeds, a verdict, and the seeds that effect
would need to be resolved at 80% power.

A verdict is read off the interval, never set by hand: "holds" when the interval lies on the
claimed side of the null (or inside the claimed range), "does not hold" when no part of it
does (or it lies outside the range), "not resolved" otherwise, and "not measured" when the run
holds fewer than :data:`bench.stats.MIN_SEEDS` seeds of what the claim reads. The intervals are
the report's own (:mod:`reports.intervals`): over seeds and prompts, paired by seed and prompt,
where both sides store per-prompt values of what the claim reads; else
:func:`bench.stats.seed_interval` (Student-t on the spread over training seeds, floored by each
seed's evaluation noise; the evaluation's own interval for an effect no seed moves; against a
row no seed moves, that row's standard error counted once), paired over the seeds two rows
share.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from scipy import stats as sps

from bench.stats import MIN_SEEDS, pair_se, seed_interval, seed_invariant, seeds_for_power
from reports.intervals import Estimate, difference, mean_interval
from reports.records import finite, group_label, se
from reports.stored import StoredClaim as Claim

LEVEL = 0.95
POWER = 0.8
Verdict = Literal["holds", "does not hold", "not resolved", "not measured"]
PROMPTS_BOUND = ("more seeds alone cannot resolve it: the evaluation prompts' own variance is as "
                 "large as the effect (more prompts would)")


@dataclass(frozen=True)
class Finding:
    """One claim as this run measured it. ``effect``, ``lo`` and ``hi`` are on the claim's
    scale (a difference, a ratio, or the row's own mean); ``per_seed`` holds each seed's
    effect; ``seeds_needed`` is the seed count at which an effect of the observed size and
    spread is resolved with 80% power (None when the effect is nil or not measured)."""

    id: str
    claim: str
    source: str
    metric: str
    compared: str
    test: str
    expect: str
    null: float
    range: list[float] | None
    seeds: list[int]
    effect: float | None
    lo: float | None
    hi: float | None
    verdict: Verdict
    seeds_needed: int | None
    figure: str
    per_seed: list[float] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def verdict(lo: float, hi: float, expect: str, null: float,
            range_: list[float] | None = None) -> Verdict:
    """The verdict an interval [lo, hi] gives a claim (module docstring)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not measured"
    if expect == "within":
        a, b = range_
        return "holds" if a <= lo and hi <= b else "does not hold" if hi < a or lo > b \
            else "not resolved"
    # an interval that reaches the null only at its far end (two rows identical on every
    # seed give [0, 0]) holds no effect on the claimed side: that claim does not hold
    if expect == "less":
        return "holds" if hi < null else "does not hold" if lo >= null else "not resolved"
    return "holds" if lo > null else "does not hold" if hi <= null else "not resolved"


def distance(mean: float, expect: str, null: float, range_: list[float] | None) -> float:
    """How far the observed effect lies from what would change the verdict: the null for a
    directional claim, the nearer end of the range for "within"."""
    if expect == "within":
        return min(abs(mean - range_[0]), abs(mean - range_[1]))
    return abs(mean - null)


def value(r: dict[str, Any], metric: str) -> float | None:
    """A record's value of ``metric``: ``eval.metric[.slice]`` from its metrics, or
    ``cost.field[.key]`` from its costs (``cost.phase_seconds.training``)."""
    if metric.startswith("cost."):
        x: Any = r.get("cost") or {}
        head, _, rest = metric[5:].partition(".")
        x = x.get(head)
        if rest and isinstance(x, dict):
            x = x.get(rest)
        return float(x) if finite(x) else None
    x = (r.get("metrics") or {}).get(metric)
    return float(x) if finite(x) else None


def _se(r: dict[str, Any], metric: str) -> float | None:
    x = se(r, metric)
    return float(x) if finite(x) else None


def _untrained(rs: list[dict[str, Any]]) -> bool:
    """No cell of the row trained anything (``movement`` None: the base models' rows)."""
    return bool(rs) and all(r.get("movement") is None for r in rs)


def _pairs(c: Claim, rows: dict[str, list[dict[str, Any]]]
           ) -> tuple[list[int], list[float], list[float | None], tuple[list[float], list[float]]]:
    """The claim's per-seed effects: seeds, effects (a difference, a log ratio, or the value
    itself for a one-sample claim), their SEs, and each side's values."""
    other_row = c.against or c.method
    other_metric = c.against_metric or c.metric
    paired = c.against is not None or c.against_metric is not None
    mine = {r["seed"]: r for r in rows.get(c.method, [])}
    theirs = {r["seed"]: r for r in rows.get(other_row, [])}
    ratio = c.scale == "ratio"
    seeds: list[int] = []
    effects: list[float] = []
    ses: list[float | None] = []
    sides: tuple[list[float], list[float]] = ([], [])
    for s in sorted(mine):
        a = value(mine[s], c.metric)
        if a is None:
            continue
        if not paired:
            seeds.append(s)
            effects.append(a)
            ses.append(_se(mine[s], c.metric))
            sides[0].append(a)
            continue
        b = value(theirs[s], other_metric) if s in theirs else None
        if b is None or (ratio and (a <= 0 or b <= 0)):
            continue
        seeds.append(s)
        sides[0].append(a)
        sides[1].append(b)
        if ratio:  # the geometric mean ratio: a paired difference of logs, exponentiated
            effects.append(math.log(a / b))
            ses.append(None)
        else:
            effects.append(a - b)
            ses.append(pair_se(_se(mine[s], c.metric), _se(theirs[s], other_metric)))
    return seeds, effects, ses, sides


def finding(c: Claim, rows: dict[str, list[dict[str, Any]]],
            missing: dict[str, list[int]] | None = None) -> Finding:
    """Test one claim on the run's finished rows (report row label -> its cells);
    ``missing``: each row's planned seeds that did not finish (failed or pending), which the
    finding names, since a claim read on the seeds that survived may read high."""
    other_row = c.against or c.method
    other_metric = c.against_metric or c.metric
    paired = c.against is not None or c.against_metric is not None
    ratio = c.scale == "ratio"
    seeds, effects, ses, sides = _pairs(c, rows)
    null = math.log(c.null) if ratio and c.null > 0 else c.null
    rng = [math.log(x) for x in c.range] if ratio and c.range else c.range
    base = _described(c, seeds)
    back = (lambda x: math.exp(x)) if ratio else (lambda x: x)
    lost = sorted({s for row in {c.method, other_row} for s in (missing or {}).get(row, [])})
    gone = f"seeds {', '.join(map(str, lost))} did not finish and are left out; " if lost else ""
    absent = unmeasured(c, rows)
    if absent:  # a metric no cell reports: more seeds would not measure it
        return Finding(**base, effect=None, lo=None, hi=None, verdict="not measured",
                       seeds_needed=None, note=absent)
    if len(seeds) < MIN_SEEDS:
        return Finding(**base, effect=back(float(np.mean(effects))) if effects else None,
                       lo=None, hi=None, verdict="not measured", seeds_needed=None,
                       per_seed=[back(x) for x in effects],
                       note=f"{gone}{len(seeds)} seed(s) hold the values; at least "
                            f"{MIN_SEEDS} are needed for an interval")
    floor = [s * s for s in ses if s is not None]
    sd = math.sqrt(max(float(np.var(effects, ddof=1)), float(np.mean(floor)) if floor else 0.0))
    estimated = not (c.metric.startswith("cost.") and other_metric.startswith("cost."))
    if sd == 0 and estimated:  # an eval's metric the same on every seed with no SE (a rate
        # at 0 or 1 on every example): nothing measures its noise; a cost is accounting
        return Finding(**base, effect=back(effects[0]), lo=None, hi=None,
                       verdict="not resolved", seeds_needed=None,
                       per_seed=[back(x) for x in effects],
                       note=f"{gone}the same value on every seed and no standard error: "
                            "nothing in this run measures its uncertainty")
    # no seed moves either side (two untrained models, the same value on every seed): its
    # noise is the evaluation's, and more seeds cannot help
    invariant = (seed_invariant(sides[0]) and _untrained(rows.get(c.method, []))
                 and (not paired or (seed_invariant(sides[1])
                                     and _untrained(rows.get(other_row, [])))))
    mean, lo, hi, split = _effect_interval(c, rows, seeds, effects, ses, sides, invariant, base)
    v = verdict(lo, hi, c.expect, null, rng)
    if invariant:
        base["test"] = (f"{'paired' if paired else 'one-sample'}; two untrained rows, the same "
                        f"on all {len(seeds)} seeds: the evaluation's own interval (normal, "
                        "its SE)")
        return Finding(**base, effect=back(mean), lo=back(lo), hi=back(hi), verdict=v,
                       seeds_needed=None, per_seed=[back(x) for x in effects],
                       note=f"{gone}the same on every seed: its interval is the evaluation's "
                            "own (its examples), which more seeds do not narrow")
    # seeds to resolve the effect as claimed; none for one resolved the other way
    need = None if v == "does not hold" else _seeds_needed(
        distance(mean, c.expect, null, rng), sd, split)
    bound = PROMPTS_BOUND if need is None and v == "not resolved" and split else ""
    return Finding(**base, effect=back(mean), lo=back(lo), hi=back(hi), verdict=v,
                   seeds_needed=None if need is None else max(MIN_SEEDS, need),
                   per_seed=[back(x) for x in effects], note=(gone + bound).rstrip("; "))


def _seeds_needed(effect: float, sd: float, split: tuple[float, float] | None) -> int | None:
    """Seeds for 80% power (:func:`bench.stats.seeds_for_power`). Over seeds and prompts
    (``split``: one seed's variance over these prompts, and the prompts' share that no seed
    count reduces) the prompts' share is first taken from what the effect must clear, at the
    normal quantiles of the test and the power: None where it alone is as large as the
    effect."""
    if split is None:
        return seeds_for_power(effect, sd, level=LEVEL, power=POWER)
    seed_var, prompt_var = split
    z = sps.norm.ppf(0.5 + LEVEL / 2) + sps.norm.ppf(POWER)
    left = effect * effect - z * z * prompt_var
    if not (math.isfinite(left) and left > 0):
        return None
    return seeds_for_power(math.sqrt(left), math.sqrt(seed_var), level=LEVEL, power=POWER)


def _effect_interval(c: Claim, rows: dict[str, list[dict[str, Any]]], seeds: list[int],
                     effects: list[float], ses: list[float | None],
                     sides: tuple[list[float], list[float]], invariant: bool,
                     base: dict[str, Any]
                     ) -> tuple[float, float, float, tuple[float, float] | None]:
    """The effect's mean and 95% interval: over seeds and prompts where both sides store
    per-prompt values (``base["test"]`` says so), against a row no seed moves with that row's
    own SE once, else the floored t over seeds (the evaluation's own interval for two rows no
    seed moves); and, over seeds and prompts, the split of its variance between what more
    seeds average away and what they do not (:class:`reports.intervals.Estimate`)."""
    paired = c.against is not None or c.against_metric is not None
    two = None if c.scale == "ratio" or invariant else over_prompts(c, rows, seeds)
    if two is not None:
        base["test"] = base["test"].replace("floored t-interval", "over seeds and prompts")
        return two.mean, two.lo, two.hi, (two.seed_var, two.prompt_var)
    if (paired and c.scale != "ratio" and not invariant and seed_invariant(sides[1])
            and _untrained(rows.get(c.against or c.method, []))):
        fixed = _against_fixed(c, rows, seeds, effects)
        if fixed is not None:
            base["test"] = base["test"].replace(
                "floored t-interval", "t-interval, the fixed row's SE counted once")
            return (*fixed, None)
    return (*seed_interval(effects, ses, level=LEVEL, invariant=invariant), None)


def over_prompts(c: Claim, rows: dict[str, list[dict[str, Any]]], seeds: list[int]
                 ) -> Estimate | None:
    """The claim's effect with an interval over seeds and prompts
    (:mod:`reports.intervals`) where both sides store per-prompt values of what it reads; None
    where one does not (a cost, a statistic that is no mean over prompts, older cells)."""
    if c.metric.startswith("cost.") or (c.against_metric or "").startswith("cost."):
        return None
    mine = {r["seed"]: r for r in rows.get(c.method, [])}
    a = [mine[s] for s in seeds]
    if c.against is None and c.against_metric is None:
        est = mean_interval(a, c.metric, None)
    else:
        theirs = {r["seed"]: r for r in rows.get(c.against or c.method, [])}
        est = difference(a, [theirs[s] for s in seeds], c.metric, c.against_metric)
    # no interval (two rows alike on every prompt): the seeds' floored t says what it can
    return est if est.population == "seeds and prompts" and math.isfinite(est.lo) else None


def _against_fixed(c: Claim, rows: dict[str, list[dict[str, Any]]], seeds: list[int],
                   effects: list[float]) -> tuple[float, float, float] | None:
    """A paired effect against a row no seed moves (an untrained model scored the same on
    every seed): its value is one draw of its evaluation, shared by every seed, so its SE
    enters once, not divided by the number of training seeds as a paired floor would. The
    variance of the mean effect is the claimed row's (its spread over seeds floored by its
    own SEs, over n) plus the fixed row's SE squared, with t on n - 1 degrees of freedom.
    None where the fixed row's cells at these seeds carry no standard error (then the paired
    floor is all there is)."""
    mine = {r["seed"]: r for r in rows[c.method]}
    values = [value(mine[s], c.metric) for s in seeds]
    _, lo, hi = seed_interval(values, [_se(mine[s], c.metric) for s in seeds], level=LEVEL,
                              invariant=False)
    theirs = {r["seed"]: r for r in rows[c.against or c.method]}
    owns = [x for s in seeds if (x := _se(theirs[s], c.against_metric or c.metric)) is not None]
    if not owns:
        return None
    own = float(np.sqrt(np.mean(np.square(owns))))  # alike on every seed, as the value is
    t = sps.t.ppf(0.5 + LEVEL / 2, len(seeds) - 1)
    half = math.sqrt(((hi - lo) / 2) ** 2 + (t * own) ** 2)
    mean = float(np.mean(effects))
    return mean, mean - half, mean + half


def _described(c: Claim, seeds: list[int]) -> dict[str, Any]:
    """A finding's fields that say what it compares and how, whatever its verdict."""
    other_row, other_metric = c.against or c.method, c.against_metric or c.metric
    ratio = c.scale == "ratio"
    if c.against is not None or c.against_metric is not None:
        what = f"{c.method}'s {c.metric}" + (f" / {other_row}'s {other_metric}" if ratio else
                                             f" − {other_row}'s {other_metric}")
        test = (f"paired over {len(seeds)} seeds; "
                + ("t-interval on the log ratio" if ratio else "floored t-interval"))
    else:
        what = f"{c.method}'s {c.metric}"
        test = f"one-sample over {len(seeds)} seeds; floored t-interval"
    return dict(id=c.id, claim=c.claim, source=c.source, metric=c.metric, compared=what,
                test=test, expect=c.expect, null=c.null, range=c.range, seeds=seeds,
                figure=c.figure)


def unmeasured(c: Claim, rows: dict[str, list[dict[str, Any]]]) -> str:
    """Why the claim's metric cannot be read at any seed (a slice or a phase that no finished
    cell of its row reports), naming what those cells do report under that name; "" when
    some cell reports it, or when the row has no finished cell (then the seed count says)."""
    for row, metric in ((c.method, c.metric),
                        (c.against or c.method, c.against_metric or c.metric)):
        rs = rows.get(row, [])
        if not rs or any(value(r, metric) is not None for r in rs):
            continue
        stem = metric.rsplit(".", 1)[0] + "."
        near = sorted({k for r in rs for k in _names(r) if k.startswith(stem)})
        return (f"no finished cell of {row} reports {metric}"
                + (f" (it reports {', '.join(near[:8])})" if near else "")
                + "; more seeds cannot measure it: fix the claim's metric")
    return ""


def _names(r: dict[str, Any]) -> list[str]:
    """Every metric and cost name a record can be read at (cost.FIELD, cost.FIELD.KEY)."""
    names = list((r.get("metrics") or {}))
    for k, v in (r.get("cost") or {}).items():
        names += [f"cost.{k}.{p}" for p in v] if isinstance(v, dict) else [f"cost.{k}"]
    return names


def findings(records: list[dict[str, Any]], claims: list[Claim]) -> list[Finding]:
    """Every claim tested on the finished cells of one matrix's ``records`` (its cells in
    matrix order: finished, failed and pending), each naming the seeds that did not finish."""
    rows: dict[str, list[dict[str, Any]]] = {}
    missing: dict[str, list[int]] = {}
    for r in records:
        if r.get("status") == "ok":
            rows.setdefault(group_label(r), []).append(r)
        elif r.get("seed") is not None:
            missing.setdefault(group_label(r), []).append(r["seed"])
    return [finding(c, rows, missing) for c in claims]


def expectation(f: Finding) -> str:
    """What the claim expects, in a few symbols: "> 0.5", "< 1", "in [0.60, 0.70]"."""
    if f.expect == "within":
        return f"in [{f.range[0]:g}, {f.range[1]:g}]"
    return f"{'>' if f.expect == 'greater' else '<'} {f.null:g}"
