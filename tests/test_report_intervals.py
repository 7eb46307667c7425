"""The report's intervals from stored per-prompt values (reports/intervals.py): the same numbers
bench.resample gives on the (seeds x prompts) matrix, the population each speaks for, pairing
by prompt where two rows share them, A/A intervals that hold 0.5, and the ranking's and the
summary's multiplicity adjustments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from bench.api import PerPrompt
from bench.record import pack_per_prompt
from bench.resample import paired_difference, two_level_mean, unpaired_difference
from bench.stats import report_interval
from reports import ranking
from reports.intervals import difference, mean_interval

PROMPTS = [f"p{i}" for i in range(40)]


def cell(method: str, seed: int, values, *, null: float | None = None, ses=None,
         prompts=PROMPTS) -> dict:
    """A stored record of eval ``e``'s metric ``m`` with its per-prompt values."""
    values = list(map(float, values))
    extra = {"null": {"m": null}} if null is not None else {}
    return {"key": f"{method}{seed}", "method": method, "seed": seed, "point": {},
            "status": "ok", "metrics": {"e.m": float(np.mean(values))},
            "uncertainty": {"e.m": ses or 0.01},
            "evals": {"e": {"per_prompt": pack_per_prompt({"m": PerPrompt.of(prompts, values)}),
                            "extra": extra}}}


def matrix(rng, n_seeds=3, n_prompts=40, mu=0.5, seed_sd=0.03, prompt_sd=0.15, noise=0.1,
           prompt_effects=None):
    b = prompt_effects if prompt_effects is not None else rng.normal(0, prompt_sd, n_prompts)
    return mu + rng.normal(0, seed_sd, (n_seeds, 1)) + b[None] + rng.normal(
        0, noise, (n_seeds, n_prompts))


def test_a_rows_interval_is_the_two_level_one_over_its_stored_matrix():
    y = matrix(np.random.default_rng(1))
    rows = [cell("ppo", s, y[s]) for s in range(3)]
    est = mean_interval(rows, "e.m", None)
    iv = two_level_mean(np.round(y, 9))
    assert (est.mean, est.lo, est.hi) == pytest.approx((iv.estimate, iv.low, iv.high))
    assert est.population == "seeds and prompts"
    one = mean_interval(rows[:1], "e.m", None)  # one seed: no interval over seeds, as before
    assert one.population == "seeds" and math.isnan(one.lo)


def test_without_per_prompt_values_the_interval_is_over_seeds_and_says_so():
    rows = [cell("ppo", s, [0.4 + 0.01 * s] * 3, prompts=PROMPTS[:3]) for s in range(3)]
    for r in rows:
        del r["evals"]
    est = mean_interval(rows, "e.m", (0.0, 1.0))
    want = report_interval([r["metrics"]["e.m"] for r in rows], [0.01] * 3, (0.0, 1.0))
    assert (est.mean, est.lo, est.hi) == pytest.approx(want) and est.population == "seeds"


def test_paired_by_prompt_is_the_paired_difference_and_narrower_than_unpaired():
    """Two rows on the same prompts share each prompt's difficulty: pairing by prompt (and
    seed) cancels it. Measured over 200 simulated pairs of rows: the paired interval is the
    narrower by the factor below, and both cover the true difference."""
    rng = np.random.default_rng(2)
    ratios, hits = [], []
    for _ in range(200):
        b = rng.normal(0, 0.15, 40)
        ya = matrix(rng, prompt_effects=b, mu=0.55, seed_sd=0.01)
        yb = matrix(rng, prompt_effects=b, seed_sd=0.01)
        a = [cell("ppo", s, ya[s]) for s in range(3)]
        o = [cell("sft", s, yb[s]) for s in range(3)]
        est = difference(a, o, "e.m")
        iv = paired_difference(np.round(ya, 9), np.round(yb, 9), paired_seeds=True)
        assert (est.lo, est.hi) == pytest.approx((iv.low, iv.high))
        un = unpaired_difference(ya, yb)
        ratios.append((est.hi - est.lo) / (un.high - un.low))
        hits.append(est.lo <= 0.05 <= est.hi)
    assert np.median(ratios) < 0.75  # the gain in power from pairing by prompt
    assert np.mean(hits) >= 0.94


def test_a_model_against_itself_holds_its_null():
    """A/A: two samples of one model judged against each other have expectation 0.5 by
    construction (both sides are draws of one policy on independent streams); the interval
    over seeds and prompts must hold it at least 94% of the time over simulated A/A
    matrices with seed and prompt variance, and the report's A/A check reads it."""
    rng = np.random.default_rng(3)
    covered = []
    for _ in range(400):
        y = np.clip(matrix(rng, mu=0.5, seed_sd=0.02, prompt_sd=0.0, noise=0.2), 0, 1)
        # per prompt, the A/A win rate is symmetric about 0.5: mirror half the prompts
        flip = rng.random(40) < 0.5
        y[:, flip] = 1 - y[:, flip]
        rows = [cell("sft", s, y[s], null=0.5) for s in range(3)]
        est = mean_interval(rows, "e.m", (0.0, 1.0))
        covered.append(est.lo <= 0.5 <= est.hi)
        assert est.p_value is not None
    assert np.mean(covered) >= 0.94


def test_a_value_fixed_by_construction_keeps_a_zero_width_interval():
    rows = [cell("sft", s, [0.0] * 40, null=0.0) for s in range(3)]
    est = mean_interval(rows, "e.m", None)
    assert (est.mean, est.lo, est.hi) == (0.0, 0.0, 0.0)


def test_the_rankings_pairs_carry_raw_and_holm_verdicts():
    """Eight rows a little apart: the 28 pairs' p-values, adjusted by Holm as statsmodels
    does it; every Holm-resolved pair is resolved raw, and here some raw ones are not."""
    rng = np.random.default_rng(4)
    b = rng.normal(0, 0.15, 40)
    groups = {f"m{i}": [cell(f"m{i}", s, row) for s, row in
                        enumerate(matrix(rng, mu=0.5 + 0.012 * i, prompt_effects=b))]
              for i in range(8)}
    rk = ranking.rank(groups, "e.m", True, n_boot=50)
    p = [x["p_value"] for x in rk["pairs"]]
    want_p, want_reject = multipletests(p, method="holm")[1], multipletests(p, method="holm")[0]
    assert [x["p_holm"] for x in rk["pairs"]] == pytest.approx(list(want_p))
    assert [x["resolved_holm"] for x in rk["pairs"]] == list(want_reject)
    raw = {(x["a"], x["b"]) for x in rk["pairs"] if x["resolved"]}
    held = {(x["a"], x["b"]) for x in rk["pairs"] if x["resolved_holm"]}
    assert held < raw
    for x in rk["pairs"]:  # the raw verdict is the interval's, and agrees with p < 0.05
        assert x["resolved"] == (x["p_value"] < 0.05)


def test_the_summary_adjusts_its_metrics_by_benjamini_hochberg():
    rng = np.random.default_rng(5)
    b = rng.normal(0, 0.15, 40)
    recs = {g: [] for g in ("a", "b")}
    gaps = {"e.m": 0.04}
    for g, mu in (("a", 0.5), ("b", 0.5 + gaps["e.m"])):
        y = matrix(rng, mu=mu, prompt_effects=b)
        recs[g] = [cell(g, s, y[s]) for s in range(3)]
    (h,) = ranking.headline(recs, {"e.m": True}, {}, ["e.m"])
    assert h["best"] == "b" and h["p_value"] is not None
    assert h["p_bh"] == pytest.approx(h["p_value"])  # one test: BH leaves it as it is
    assert h["resolved_bh"] == (h["resolved"] and h["p_bh"] < 0.05)


def clustered_cell(method, seed, judgments: dict[str, list[float]]):
    """A cell of an agreement metric: several judgments under each prompt's id."""
    ids = [p for p, v in judgments.items() for _ in v]
    values = [x for v in judgments.values() for x in v]
    r = cell(method, seed, values, prompts=ids)
    return r


def test_clustered_judgments_centre_on_the_metric_and_resample_prompts():
    """Prompts with different numbers of judgments (ties dropped): each seed's row is the
    linearized ratio, so the interval is centred on the mean of the cells' own metrics (the
    judgment-weighted means), not on a prompt-weighted mean; and a seed is as wide as the
    cluster bootstrap says for one seed's judgments."""
    rng = np.random.default_rng(6)
    rows = []
    for s in range(3):
        judged = {f"p{i}": list((rng.random(int(rng.integers(0, 5))) < 0.3 + 0.6 * (i % 2))
                                .astype(float)) for i in range(60)}
        rows.append(clustered_cell("ppo", s, {k: v for k, v in judged.items() if v}))
    est = mean_interval(rows, "e.m", (0.0, 1.0))
    want = np.mean([r["metrics"]["e.m"] for r in rows])
    assert est.mean == pytest.approx(want)
    assert (est.lo + est.hi) / 2 == pytest.approx(want, abs=1e-9)  # symmetric, inside (0, 1)
    assert est.population == "seeds and prompts"


def test_the_p_value_agrees_with_the_interval_it_is_shown_with():
    """A difference whose matrices miss some values (filled by the additive fit): the shown
    interval is around the cells' own mean difference, and p < 0.05 exactly when it
    excludes 0, which the ranking's Holm verdict relies on."""
    rng = np.random.default_rng(7)
    b = rng.normal(0, 0.15, 40)
    for gap in (0.0, 0.02, 0.04, 0.06, 0.1):
        ya = matrix(rng, prompt_effects=b, mu=0.5 + gap, seed_sd=0.01)
        yb = matrix(rng, prompt_effects=b, seed_sd=0.01)
        ya[0, :3] = np.nan  # seed 0 of a did not score three prompts
        a = [cell("a", s, ya[s][np.isfinite(ya[s])], prompts=[p for p, ok in zip(
            PROMPTS, np.isfinite(ya[s])) if ok]) for s in range(3)]
        o = [cell("b", s, yb[s]) for s in range(3)]
        est = difference(a, o, "e.m")
        assert est.population == "seeds and prompts"
        assert est.mean == pytest.approx(np.mean([x["metrics"]["e.m"] - y["metrics"]["e.m"]
                                                  for x, y in zip(a, o)]))
        assert (est.p_value < 0.05) == (est.lo > 0 or est.hi < 0), (gap, est)


def test_a_slice_against_its_whole_is_compared_over_seeds():
    """Two metrics on different prompt sets (a slice and the set it is cut from) share the
    cells, so neither pairing by prompt nor treating them as independent is right: the
    difference is over seeds, on these prompts, and says so."""
    rng = np.random.default_rng(8)
    rows = []
    for s in range(3):
        y = matrix(rng, n_seeds=1)[0]
        r = cell("ppo", s, y)
        sub = cell("ppo", s, y[:10], prompts=PROMPTS[:10])
        r["evals"]["e"]["per_prompt"] = pack_per_prompt({
            "m": PerPrompt.of(PROMPTS, np.round(y, 9)),
            "m.slice": PerPrompt.of(PROMPTS[:10], np.round(y[:10], 9))})
        r["metrics"]["e.m.slice"] = sub["metrics"]["e.m"]
        rows.append(r)
    est = difference(rows, rows, "e.m.slice", "e.m")
    assert est.population == "seeds" and math.isfinite(est.lo)
