"""Intervals over seeds that an A/A comparison cannot fool: known answers for the floored
interval, and real A/A win-rates (a model against itself) whose interval must contain 0.5."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.api import EvalContext
from bench.budget import Ledger
from bench.stats import (MIN_SEEDS, bounded_seed_interval, paired_seed_delta, report_interval,
                         seed_interval, t_interval)


def test_three_seeds_that_agree_by_chance_keep_their_evaluation_noise():
    """The quickstart's sft cell against its own samples: 0.487, 0.484, 0.484 with per-seed
    SEs near 0.01. The t-interval on the spread alone excluded 0.5."""
    vals, ses = [0.487, 0.484, 0.484], [0.010, 0.011, 0.009]
    m, lo, hi = t_interval(vals)
    assert hi < 0.5  # the bug: an A/A interval that excludes 0.5
    m2, lo2, hi2 = seed_interval(vals, ses)
    half = sps.t.ppf(0.975, 2) * math.sqrt(np.mean(np.square(ses)) / 3)  # by hand
    assert m2 == pytest.approx(0.485) and m2 == m
    assert (lo2, hi2) == pytest.approx((0.485 - half, 0.485 + half))
    assert lo2 < 0.5 < hi2


def test_a_real_spread_wider_than_the_noise_is_the_t_interval():
    vals, ses = [0.40, 0.55, 0.62], [0.01, 0.01, 0.01]
    assert seed_interval(vals, ses) == pytest.approx(t_interval(vals))
    assert seed_interval(vals) == pytest.approx(t_interval(vals))  # no SEs: no floor
    assert seed_interval(vals, [0.01, None, 0.01]) == pytest.approx(t_interval(vals))
    m, lo, hi = seed_interval([0.5], [0.01])
    assert m == 0.5 and math.isnan(lo) and math.isnan(hi)  # one seed: undefined


def test_paired_difference_carries_both_sides_noise():
    a, b = [0.52, 0.53, 0.52], [0.50, 0.51, 0.50]  # differences agree exactly: spread 0
    d, lo, hi = paired_seed_delta(a, b, [0.01] * 3, [0.01] * 3)
    half = sps.t.ppf(0.975, 2) * math.sqrt(2 * 0.01 ** 2 / 3)
    assert d == pytest.approx(0.02) and (lo, hi) == pytest.approx((0.02 - half, 0.02 + half))
    assert lo < 0  # not resolved: the noise of each side is larger than the difference


def test_coverage_is_at_least_nominal_when_seeds_add_nothing():
    """Simulated A/A: three seeds, each pure evaluation noise of a known SE. The t-interval
    covers 95% on average but is often far narrower than the noise; the floored one covers
    at least 95% and is never narrower than t * SE / sqrt(n)."""
    rng = np.random.default_rng(0)
    se, n, reps = 0.01, 3, 4000
    x = 0.5 + rng.normal(0, se, size=(reps, n))
    cover = [seed_interval(row, [se] * n) for row in x]
    assert np.mean([lo <= 0.5 <= hi for _, lo, hi in cover]) >= 0.95
    floor = sps.t.ppf(0.975, n - 1) * se / math.sqrt(n)
    assert min(hi - m for m, _, hi in cover) >= floor - 1e-12


def _aa_win_rates(world, policy, seeds, samples=8):
    """win_rate of ``policy`` against itself as the reference (an A/A comparison) per seed:
    (values, per-seed SEs, whether the eval marked it as A/A, per-prompt values)."""
    from bench.stage_cache import FrozenReference
    from evals.win_rate import WinRate
    ref = FrozenReference(policy)
    vals, ses, marked, per = [], [], [], []
    for seed in seeds:
        ctx = EvalContext(world=world, seed=seed, references={"sft": ref}, trained=None,
                          curves={}, ledger=Ledger(), progress=False,
                          options=WinRate.Options(samples_per_prompt=samples,
                                                  references=["sft"]),
                          data=world.eval_data["win_rate"])
        res = WinRate().evaluate(policy, ctx)
        vals.append(res.metrics["vs_sft"])
        ses.append(res.uncertainty["vs_sft"])
        marked.append(res.extra.get("null", {}).get("vs_sft"))
        per.append(res.per_prompt["vs_sft"].values)
    return vals, ses, marked, per


@pytest.mark.slow
def test_aa_win_rate_intervals_contain_one_half_and_ses_match_the_spread(default_world):
    """Base against base on the quickstart's world, ten seeds: each 3-seed interval contains
    0.5, over seeds and over seeds and prompts (the report's, from the per-prompt values), and
    the per-seed bootstrap SE is the size of the observed seed-to-seed spread (the floor is
    only honest if the SE is)."""
    from bench.resample import two_level_mean
    base = default_world.load_policy(default_world.base_model)
    vals, ses, marked, per = _aa_win_rates(default_world, base, range(10))
    assert marked == [0.5] * 10  # the eval says which comparisons are A/A
    sd, se = float(np.std(vals, ddof=1)), float(np.sqrt(np.mean(np.square(ses))))
    # ten seeds pin the SD to about +-25%: a ratio outside [0.4, 2.5] means the SE is wrong
    assert 0.4 < sd / se < 2.5, (sd, se, vals)
    for i in range(0, 9, 3):
        m, lo, hi = seed_interval(vals[i:i + 3], ses[i:i + 3])
        assert lo <= 0.5 <= hi, (vals[i:i + 3], ses[i:i + 3], lo, hi)
        both = two_level_mean(per[i:i + 3], null=0.5)
        assert both.low <= 0.5 <= both.high and both.p_value >= 0.05, (vals[i:i + 3], both)


def test_the_report_flags_an_aa_interval_that_misses_one_half(tmp_path):
    """The report checks every A/A metric against its null value: an honest record passes, and
    one whose SEs were understated (and whose seeds happen to agree) is flagged."""
    from bench import store
    from reports.build import build_report

    def rec(seed, value, se):
        return {"key": f"sft{seed}", "method": "sft", "seed": seed, "point": {}, "status": "ok",
                "metrics": {"win_rate.vs_sft": value}, "uncertainty": {"win_rate.vs_sft": se},
                "evals": {"win_rate": {"higher_is_better": {"vs_sft": True},
                                       "extra": {"null": {"vs_sft": 0.5}}}},
                "budget": {"given": {}, "spent": {}}, "provenance": {"seconds": 1.0}}

    for name, se, flagged in (("honest", 0.01, False), ("understated", 0.0005, True)):
        out = tmp_path / name
        for s, v in enumerate([0.487, 0.484, 0.484]):
            store.atomic_write_json(out / "cells" / f"sft{s}" / "result.json", rec(s, v, se))
        build_report(out)
        html = (out / "report.html").read_text()
        assert 'id="aa-checks"' in html
        assert ("A/A check failed" in html) is flagged
        assert ("A/A CHECK FAILED" in (out / "report.md").read_text()) is flagged


def test_a_bounded_metrics_interval_stays_in_its_range_and_is_otherwise_unchanged():
    """Known answers: three seeds of a rate near 1 whose raw interval crosses 1 are cut at 1
    (the low end as the raw interval's); an interval inside the range is the raw one; a kappa
    near -1 is cut at -1; below 3 seeds there is no interval."""
    raw = seed_interval([0.75, 1.0, 0.9], [0.01] * 3)
    assert raw[2] > 1
    got = bounded_seed_interval([0.75, 1.0, 0.9], [0.01] * 3, (0.0, 1.0))
    assert got == (raw[0], raw[1], 1.0)
    inside = [0.50, 0.52, 0.48]
    assert report_interval(inside, [0.01] * 3, (0.0, 1.0)) == seed_interval(inside, [0.01] * 3)
    kappa = report_interval([-0.95, -0.6, -0.99], None, (-1.0, 1.0))
    assert kappa[1] == -1.0 and kappa[2] < 0
    drop = report_interval([0.01, 0.2, 0.1], None, (0.0, None))  # one side open
    assert drop[1] == 0.0 and drop[2] == seed_interval([0.01, 0.2, 0.1], None)[2]
    assert MIN_SEEDS == 3
    mean, lo, hi = report_interval([0.75, 1.0], [0.01, 0.01], (0.0, 1.0))
    assert mean == 0.875 and math.isnan(lo) and math.isnan(hi)
    assert math.isnan(report_interval([0.5, 0.6], None, None)[1])  # unbounded too


def test_the_report_keeps_bounded_intervals_in_range_and_draws_none_below_three_seeds(tmp_path):
    """End to end through the report: a toxicity row near 0 whose raw interval goes below 0
    reads from 0.000; a row with 2 seeds says it has no interval and gets no paired
    difference; the ranking draws no interval and resolves no pair below 3 seeds."""
    import json as _json

    from bench import store
    from reports.build import build_report

    def rec(method, seed, tox, win):
        return {"key": f"{method}{seed}".ljust(store.KEY_LEN, "0"), "method": method,
                "seed": seed, "point": {}, "status": "ok", "start": "base" if method == "sft"
                else "sft", "metrics": {"toxicity.probability": tox, "win_rate.vs_sft": win},
                "uncertainty": {"toxicity.probability": 0.01, "win_rate.vs_sft": 0.01},
                "evals": {"toxicity": {"higher_is_better": {"probability": False},
                                       "bounds": {"probability": [0.0, 1.0]}},
                          "win_rate": {"higher_is_better": {"vs_sft": True},
                                       "bounds": {"vs_sft": [0.0, 1.0]},
                                       "ranking_metric": "vs_sft"}},
                "budget": {"given": {}, "spent": {}}, "provenance": {"seconds": 1.0}}

    out = tmp_path / "out"
    cells = [rec("sft", s, t, 0.5) for s, t in enumerate([0.01, 0.09, 0.0])]
    cells += [rec("dpo", s, t, w) for s, t, w in ((0, 0.0, 0.6), (1, 0.02, 0.62))]
    for r in cells:
        store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
    build_report(out)
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    sft_row = next(line for line in md.splitlines() if line.startswith("| sft"))
    raw = seed_interval([0.01, 0.09, 0.0], [0.01] * 3)
    assert raw[1] < 0 and "[0.000, " in sft_row, sft_row
    assert "2 seeds: no interval" in html
    dpo_row = next(line for line in md.splitlines() if line.startswith("| dpo"))
    assert "[" not in dpo_row and "Δ" not in dpo_row, dpo_row
    ranking = _json.loads((out / "ranking.json").read_text())
    assert {r["label"]: r["lo"] is None for r in ranking["rows"]} == {"sft": False, "dpo": True}
    assert ranking["pairs"] == []  # dpo and sft share 2 seeds: nothing to resolve


def test_the_science_tests_pass_a_null_effect_at_most_one_time_in_a_hundred():
    """tests/test_science.py asserts each effect with the bound of a 98% interval over seven
    seeds (one-sided 1%). Simulated nil effects at the spreads the quickstart's cells show
    (win-rate: seed spread 0.015, per-seed SE 0.012; a paired difference without SEs, like the
    reward-hacking gap) clear that bound at most 1% of the time: a broken method would."""
    from bench.stats import paired_seed_delta, seed_interval
    rng = np.random.default_rng(0)
    n, trials = 7, 20000
    win = 0.5 + rng.normal(0, 0.015, (trials, n))
    passed = np.mean([seed_interval(v, [0.012] * n, level=0.98)[1] > 0.5 for v in win])
    assert passed < 0.01, passed
    a, b = rng.normal(1.0, 0.4, (trials, n)), rng.normal(1.0, 0.4, (trials, n))
    passed = np.mean([paired_seed_delta(x, y, level=0.98)[1] > 0 for x, y in zip(a, b)])
    assert passed < 0.0125, passed  # t is exact here: 1%, and the simulation's SD is 0.07%
    assert paired_seed_delta([1.0] * n, [1.0] * n, level=0.98)[1] == 0.0  # no effect at all
