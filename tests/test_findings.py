"""Claims as findings: known answers for the verdicts, the seeds-for-power count and
the effects, computed by hand from hand-written records; the claims table validated like the
rest of the matrix; the report opening with the findings and writing them to findings.json and
report.md; and the claims preset on a small world end to end."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from bench import config, output, store
from bench.cells import expand
from bench.config import Claim, ConfigError
from bench.stats import seeds_for_power, t_test_power
from reports.build import build_report
from reports.findings import finding, findings, value, verdict

T975_2 = 4.302652729911275  # Student t, 97.5%, 2 degrees of freedom (tables)


# --------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("lo, hi, expect, null, rng, want", [
    (0.51, 0.60, "greater", 0.5, None, "holds"),
    (0.40, 0.49, "greater", 0.5, None, "does not hold"),
    (0.49, 0.60, "greater", 0.5, None, "not resolved"),
    (0.0, 0.0, "greater", 0.0, None, "does not hold"),  # identical rows: no effect at all
    (-0.2, -0.1, "less", 0.0, None, "holds"),
    (0.1, 0.2, "less", 0.0, None, "does not hold"),
    (0.0, 0.0, "less", 0.0, None, "does not hold"),
    (-0.1, 0.1, "less", 0.0, None, "not resolved"),
    (0.62, 0.68, "within", 0.0, [0.6, 0.7], "holds"),
    (0.71, 0.80, "within", 0.0, [0.6, 0.7], "does not hold"),
    (0.40, 0.59, "within", 0.0, [0.6, 0.7], "does not hold"),
    (0.65, 0.75, "within", 0.0, [0.6, 0.7], "not resolved"),
    (math.nan, math.nan, "greater", 0.0, None, "not measured"),
])
def test_verdict_is_read_off_the_interval(lo, hi, expect, null, rng, want):
    assert verdict(lo, hi, expect, null, rng) == want


def test_seeds_for_power_known_answers():
    """Cohen's tables for a one-sample two-sided t-test at 5% and 80% power: d = 0.5 needs 34,
    d = 0.2 needs 199, d = 1 needs 10; a larger effect or a smaller spread never needs more."""
    assert seeds_for_power(0.5, 1.0) == 34
    assert seeds_for_power(0.2, 1.0) == 199
    assert seeds_for_power(1.0, 1.0) == 10
    assert seeds_for_power(-1.0, 1.0) == 10  # the sign does not matter
    assert seeds_for_power(0.0, 1.0) is None and seeds_for_power(1e-4, 1.0) is None
    assert seeds_for_power(1.0, 0.0) == 2
    counts = [seeds_for_power(d, 1.0) for d in (0.3, 0.6, 1, 2, 5, 10, 25, 100)]
    assert counts == sorted(counts, reverse=True), counts


def test_t_test_power_matches_statsmodels_where_it_computes():
    """Our power agrees with statsmodels' noncentral t to 1e-3; past noncentrality ~10, where
    statsmodels returns nan, ours stays a probability and keeps rising with the effect."""
    from statsmodels.stats.power import TTestPower
    for d, n in [(0.5, 34), (0.5, 33), (1.0, 10), (3.0, 3), (0.2, 199), (1.5, 5)]:
        want = float(TTestPower().power(effect_size=d, nobs=n, alpha=0.05,
                                        alternative="two-sided"))
        assert t_test_power(d, n) == pytest.approx(want, abs=1e-3), (d, n)
    big = [t_test_power(d, 2) for d in (5, 8, 10, 15, 25, 100)]
    assert all(0 <= p <= 1 for p in big) and big == sorted(big), big


def rec(method, seed, metrics, ses=None, point=None, cost=None):
    key = f"{method[:3]}{seed}{abs(hash(str(point))) % 997}".ljust(store.KEY_LEN, "0")[:16]
    return {"key": key, "method": method, "seed": seed, "point": point or {}, "status": "ok",
            "metrics": metrics, "uncertainty": ses or {}, "cost": cost or {}}


def claim(**kw) -> Claim:
    return Claim(**{"id": "x", "claim": "a claim", "metric": "m.a", "method": "ppo", **kw})


def test_one_sample_effect_interval_and_power_by_hand():
    """ppo's m.a over three seeds against 0.5: the floored t-interval (the seed spread here is
    larger than the SE floor), and the power count from the observed mean and spread."""
    vals, se = [0.55, 0.60, 0.58], 0.01
    rows = {"ppo": [rec("ppo", s, {"m.a": v}, {"m.a": se}) for s, v in enumerate(vals)]}
    f = finding(claim(null=0.5), rows)
    x = np.array(vals)
    half = T975_2 * math.sqrt(max(x.var(ddof=1), se * se) / 3)
    assert (f.effect, f.lo, f.hi) == pytest.approx((x.mean(), x.mean() - half, x.mean() + half))
    assert f.verdict == "holds" and f.seeds == [0, 1, 2] and f.per_seed == vals
    assert f.seeds_needed == seeds_for_power(x.mean() - 0.5, x.std(ddof=1))
    # the same claim on values that sit below the null does not hold: no constant decides
    low = {"ppo": [rec("ppo", s, {"m.a": 1 - v}) for s, v in enumerate(vals)]}
    assert finding(claim(null=0.5), low).verdict == "does not hold"


def test_paired_difference_uses_shared_seeds_and_both_noise_floors():
    """ppo minus sft over the seeds both have (sft lacks seed 3, ppo lacks seed 4); each
    difference carries both SEs, and here the floor (not the spread) sets the width."""
    ppo = [rec("ppo", s, {"m.a": 0.20 + 0.001 * s}, {"m.a": 0.03}) for s in (0, 1, 2, 3)]
    # sft trained (movement set): its equal values are chance, its noise each seed's own
    sft = [{**rec("sft", s, {"m.a": 0.10}, {"m.a": 0.04}), "movement": {"moved": True}}
           for s in (0, 1, 2, 4)]
    f = finding(claim(against="sft"), {"ppo": ppo, "sft": sft})
    assert f.seeds == [0, 1, 2]
    d = np.array([0.10, 0.101, 0.102])
    half = T975_2 * math.sqrt(max(d.var(ddof=1), 0.05 ** 2) / 3)  # hypot(0.03, 0.04) = 0.05
    assert (f.effect, f.lo, f.hi) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    assert f.verdict == "not resolved"  # 0.101 +- 0.124
    assert f.seeds_needed == seeds_for_power(d.mean(), 0.05)
    assert "paired over 3 seeds" in f.test


def test_ratio_of_costs_and_another_metric_of_the_same_row():
    """A cost ratio is the geometric mean of per-seed ratios with a t-interval on their logs;
    ``against_metric`` alone compares two metrics of one row (claim 4's reward model)."""
    dpo = [rec("dpo", s, {}, cost={"train_flops": f}) for s, f in enumerate([1.0, 2.0, 1.5])]
    ppo = [rec("ppo", s, {}, cost={"train_flops": f}) for s, f in enumerate([4.0, 7.0, 6.5])]
    f = finding(claim(metric="cost.train_flops", method="dpo", against="ppo", scale="ratio",
                      expect="less", null=1.0), {"dpo": dpo, "ppo": ppo})
    logs = np.log([1 / 4, 2 / 7, 1.5 / 6.5])
    half = T975_2 * logs.std(ddof=1) / math.sqrt(3)
    assert (f.effect, f.lo, f.hi) == pytest.approx(
        tuple(np.exp([logs.mean(), logs.mean() - half, logs.mean() + half])))
    assert f.verdict == "holds" and "log ratio" in f.test
    same = [rec("ppo", s, {"m.a": 0.7, "m.b": 0.6 + 0.01 * s}, {"m.a": 0.01, "m.b": 0.01})
            for s in range(3)]
    g = finding(claim(against_metric="m.b"), {"ppo": same})
    assert g.effect == pytest.approx(0.09) and g.verdict == "holds"
    assert g.compared == "ppo's m.a − ppo's m.b"


def test_fewer_than_three_seeds_is_not_measured_and_cost_paths_read():
    rows = {"ppo": [rec("ppo", s, {"m.a": 0.6}) for s in range(2)]}
    f = finding(claim(null=0.5), rows)
    assert f.verdict == "not measured" and f.lo is None and "at least 3" in f.note
    assert finding(claim(method="dpo"), rows).verdict == "not measured"  # no such row
    r = rec("ppo", 0, {"m.a": 1.0}, cost={"phase_seconds": {"training": 12.5},
                                          "train_flops": 3e9, "bad": "x"})
    assert value(r, "cost.phase_seconds.training") == 12.5
    assert value(r, "cost.train_flops") == 3e9
    assert value(r, "cost.bad") is None and value(r, "cost.phase_seconds.nope") is None
    assert value(r, "m.missing") is None


def test_a_value_no_seed_moves_keeps_the_evaluations_own_interval():
    """Two untrained models give the same MC1 on every seed: one evaluation repeated. Its
    interval is at least mean +- z * SE whatever the seed count (dividing by sqrt(n) would
    narrow it with every seed added), never narrower than the floored t (three seeds: t(2) *
    SE / sqrt(3) is wider), and no seed count is offered to resolve it. A paired difference
    that agrees on every seed while both sides vary keeps the floored t."""
    from bench.stats import paired_seed_delta, seed_interval
    z = sps.norm.ppf(0.975)
    for n in (4, 10, 30):
        assert seed_interval([0.35] * n, [0.1] * n) == pytest.approx((0.35, 0.35 - z * 0.1,
                                                                      0.35 + z * 0.1))
    t3 = T975_2 * 0.1 / math.sqrt(3)
    assert seed_interval([0.35] * 3, [0.1] * 3) == pytest.approx((0.35, 0.35 - t3, 0.35 + t3))
    assert seed_interval([0.0] * 5, [0.0] * 5) == (0.0, 0.0, 0.0)  # no noise: exact
    a, b = [0.5, 0.6, 0.7, 0.8], [0.4, 0.5, 0.6, 0.7]  # both vary; the difference does not
    _, lo, hi = paired_seed_delta(a, b, [0.03] * 4, [0.04] * 4)
    half = sps.t.ppf(0.975, 3) * 0.05 / 2
    assert (lo, hi) == pytest.approx((0.1 - half, 0.1 + half))
    large = [rec("large_base", s, {"m.a": 0.30}, {"m.a": 0.06}) for s in range(10)]
    base = [rec("base", s, {"m.a": 0.35}, {"m.a": 0.08}) for s in range(10)]
    f = finding(claim(method="large_base", against="base", expect="less"),
                {"large_base": large, "base": base})
    assert (f.effect, f.lo, f.hi) == pytest.approx((-0.05, -0.05 - z * 0.1, -0.05 + z * 0.1))
    assert f.verdict == "not resolved" and f.seeds_needed is None
    assert "more seeds do not narrow" in f.note


def test_a_claim_against_a_row_no_seed_moves_counts_that_rows_noise_once():
    """ppo against an untrained base scored the same on every seed: base's value is one draw
    of its evaluation, shared by all seeds, so its SE (0.04) enters the interval whole; the
    paired floor used to divide it by the seed count. The claimed row keeps its own floored
    spread over seeds."""
    ppo = [rec("ppo", s, {"m.a": v}, {"m.a": 0.01}) for s, v in enumerate([0.30, 0.36, 0.33])]
    base = [rec("base", s, {"m.a": 0.10}, {"m.a": 0.04}) for s in range(3)]  # no movement
    f = finding(claim(against="base"), {"ppo": ppo, "base": base})
    t = sps.t.ppf(0.975, 2)
    mine = t * math.sqrt(max(np.var([0.30, 0.36, 0.33], ddof=1), 0.01 ** 2) / 3)
    half = math.sqrt(mine ** 2 + (t * 0.04) ** 2)
    assert (f.effect, f.lo, f.hi) == pytest.approx((0.23, 0.23 - half, 0.23 + half))
    old_half = t * math.sqrt(max(np.var([0.20, 0.26, 0.23], ddof=1), 0.01 ** 2 + 0.04 ** 2) / 3)
    assert half > 1.5 * old_half  # what dividing base's noise by sqrt(3) claimed


def test_no_verdict_from_a_constant_and_no_seed_count_the_wrong_way():
    """An eval's metric the same on every seed with no SE (a rate at 0 on every example)
    has no measured noise: not resolved, not a verdict from a constant. Trained rows that tie
    by chance keep the floored t and a seed count. A claim resolved the other way gets no seed
    count (power to find the opposite is not what it asks). Seeds that did not finish are
    named."""
    zero = [rec("ppo", s, {"m.a": 0.0}, {"m.a": 0.0}) for s in range(3)]
    f = finding(claim(), {"ppo": zero})
    assert f.verdict == "not resolved" and f.lo is None and "no standard error" in f.note
    tied = [{**rec("ppo", s, {"m.a": 0.6}, {"m.a": 0.05}), "movement": {"moved": True}}
            for s in range(4)]
    f = finding(claim(null=0.5), {"ppo": tied})
    half = sps.t.ppf(0.975, 3) * 0.05 / 2
    assert (f.lo, f.hi) == pytest.approx((0.6 - half, 0.6 + half)) and f.seeds_needed == \
        max(3, seeds_for_power(0.1, 0.05))
    low = [rec("ppo", s, {"m.a": v}, {"m.a": 0.01}) for s, v in enumerate([0.40, 0.42, 0.41])]
    f = finding(claim(null=0.5), {"ppo": low})
    assert f.verdict == "does not hold" and f.seeds_needed is None
    recs = low + [{"key": "x" * 16, "method": "ppo", "seed": 7, "point": {},
                   "status": "failed"}]
    (f,) = findings(recs, [claim(null=0.5)])
    assert f.seeds == [0, 1, 2] and "seeds 7 did not finish" in f.note


def test_rows_are_report_rows_with_their_sweep_point():
    recs = [rec("ppo", s, {"m.a": v}, point={"ppo.kl_coef": k})
            for k, v in ((0.0, 0.9), (0.1, 0.2)) for s in range(3)]
    (f,) = findings(recs, [claim(method="ppo [ppo.kl_coef=0.0]",
                                 against="ppo [ppo.kl_coef=0.1]")])
    assert f.effect == pytest.approx(0.7) and f.seeds == [0, 1, 2]


# --------------------------------------------------------------------------- the matrix


CLAIM = {"id": "c1", "claim": "ppo beats sft", "metric": "win_rate.vs_sft", "method": "ppo",
         "null": 0.5}


@pytest.mark.parametrize("bad, needle", [
    ({"method": "ppoo"}, "row 'ppoo' is not a method of this matrix"),
    ({"against": "kto"}, "row 'kto' is not a method"),
    ({"metric": "winrate.vs_sft"}, "is of no eval in this matrix"),
    ({"expect": "within"}, "range is for expect = 'within'"),
    ({"range": [0.1, 0.2]}, "range is for expect = 'within'"),
    ({"expect": "within", "range": [0.7, 0.6]}, "low < high"),
    ({"scale": "ratio"}, "a ratio needs against"),
    ({"id": "has space"}, "claims.0.id"),
    ({"verdict": "holds"}, "unknown key 'claims.0.verdict'"),  # no verdict by hand
    ({"metric": "win_rate.vs_stf"}, "win_rate has no 'vs_stf'"),
    ({"metric": "cost.train_flop"}, "cost has no 'train_flop'"),
    ({"metric": "cost.train_flops", "against": "sft", "scale": "ratio", "null": 0.0},
     "above 0"),
    ({"metric": "cost.train_flops", "against": "sft", "scale": "ratio", "null": 1.0,
      "expect": "within", "range": [-1.0, 2.0]}, "above 0"),
])
def test_bad_claims_are_refused_in_one_line(bad, needle):
    with pytest.raises(ConfigError) as e:
        config.parse({"claims": [{**CLAIM, **bad}]})
    assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="used twice"):
        config.parse({"claims": [CLAIM, CLAIM]})


def test_a_claim_on_a_row_the_sweep_does_not_make_is_refused_before_the_run(tmp_path):
    """A bare "ppo" while a sweep of ppo.kl_coef makes only "ppo [ppo.kl_coef=...]" rows, or a
    sweep value the matrix does not have, is refused by the runner's preflight, naming the
    rows there are: before a world is built or a folder written."""
    from bench import runner
    m = {"methods": ["sft", "ppo"], "evals": ["win_rate"], "seeds": [0],
         "sweep": {"ppo.kl_coef": [0.0, 0.1]}}
    for row in ("ppo", "ppo [ppo.kl_coef=0.3]"):
        bad = config.parse({**m, "claims": [{**CLAIM, "method": row}]})
        with pytest.raises(ConfigError, match=r"is not a row of this matrix; its rows: ppo \["):
            runner.run(bad, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_a_subset_of_the_claims_preset_keeps_the_claims_it_can_measure():
    """``alignbench run claims --methods sft,dpo`` keeps the claims on sft and dpo alone (as
    --methods drops the other methods' tables) instead of refusing the subset."""
    m = config.overridden(config.load("claims"), methods=["base", "sft", "dpo"])
    kept = {c.id for c in m.claims}
    # 1b: dpo against the world's wider base; 3b: dpo's own variants (3 rounds against 1)
    assert kept == {"1b", "3b", "8b", "8d", "8g"}, kept


def test_evals_subset_drops_the_other_evals_tables_and_the_claims_on_them():
    """``--evals win_rate`` on the claims preset: its eval tables for the other evals and the
    claims that read them go (a cost claim stays), instead of a refusal to remove a table."""
    full = config.load("claims")
    m = config.overridden(full, evals=["win_rate"])
    assert m.evals == ["win_rate"] and set(m.eval) <= {"win_rate"}
    assert m.eval["win_rate"] == full.eval["win_rate"]
    heads = {c.metric.split(".", 1)[0] for c in m.claims}
    assert heads <= {"win_rate", "cost"} and "win_rate" in heads
    assert len(m.claims) == sum(c.metric.split(".", 1)[0] in ("win_rate", "cost")
                                for c in full.claims)
    with pytest.raises(ConfigError, match="unknown eval 'win_rat'"):
        config.overridden(full, evals=["win_rat"])


def test_the_claims_preset_reads_only_what_its_matrix_makes():
    """Every claim of the preset names rows its sweep makes and metrics its evals report, and
    its seeds are disjoint from every seed any preset's settings were chosen on (0-9)."""
    m = config.load("claims")
    assert len(m.claims) >= 12 and not set(m.seeds) & set(range(10))
    rows = {config.row_label(c.name, c.point) for c in expand(config.plan(m))}
    assert {"ppo [ppo.kl_coef=0.0]", "ppo [ppo.kl_coef=0.1]", "ppo [ppo.rounds=3] [ppo.steps=13]",
            "dpo", "dpo [dpo.rounds=3]", "rlaif"} <= rows
    for c in m.claims:
        assert set(c.rows()) <= rows, c.id
    assert {r for c in m.claims for r in c.rows()} == rows  # no row trained for nothing


# --------------------------------------------------------------------------- the report


def claims_folder(tmp_path, claims):
    """Three seeds of sft and ppo; ppo wins on every seed, and is cheaper on none."""
    out = output.claim(tmp_path / "out")
    plan = []
    for method, win, flops in (("sft", [0.50, 0.49, 0.51], 1e9), ("ppo", [0.58, 0.61, 0.57],
                                                                  5e9)):
        for seed, w in enumerate(win):
            r = rec(method, seed, {"win_rate.vs_sft": w}, {"win_rate.vs_sft": 0.01},
                    cost={"train_flops": flops * (1 + seed / 10)})
            r.update(start="sft" if method == "ppo" else "base", budget={"given": {}, "spent": {}},
                     evals={"win_rate": {"higher_is_better": {"vs_sft": True}}},
                     provenance={"seconds": 1.0, "matrix_name": "claims-test"})
            store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
            plan.append({"key": r["key"], "method": method, "seed": seed, "point": {}})
    output.write_plan(out, "claims-test", plan)
    import tomli_w
    # a folder may come from an older version, whose claims named figures differently: the
    # figure is written as given, past the check a new matrix gets
    m = config.parse({"methods": ["sft", "ppo"], "evals": ["win_rate"],
                      "claims": [{**c, "figure": ""} for c in claims]})
    data = config.resolved(m)
    for stored, given in zip(data["claims"], claims, strict=True):
        stored["figure"] = given.get("figure", "")
    (out / "matrix.toml").write_text(tomli_w.dumps(data))
    build_report(out)
    return out


def test_a_claim_naming_a_figure_no_eval_declares_is_refused_with_the_ids():
    with pytest.raises(ConfigError, match=r"claims\[0\] \(c1\): figure 'trade-off' is no figure "
                       r"of this matrix's evals; use one of metrics, training-curves, "
                       r"budget-sweep"):
        config.parse({"methods": ["sft", "ppo"], "evals": ["win_rate"],
                      "claims": [{**CLAIM, "figure": "trade-off"}]})
    # with toxicity in the matrix, its declared figure is one to name
    m = config.parse({"methods": ["sft", "ppo"], "evals": ["win_rate", "toxicity"],
                      "claims": [{**CLAIM, "figure": "trade-offs"}]})
    assert m.claims[0].figure == "trade-offs"


def test_the_report_opens_with_the_findings(tmp_path):
    claims = [CLAIM, {"id": "c2", "claim": "ppo is cheaper", "metric": "cost.train_flops",
                      "method": "ppo", "against": "sft", "scale": "ratio", "expect": "less",
                      "null": 1.0, "figure": "no such figure"}]
    out = claims_folder(tmp_path, claims)
    found = json.loads((out / "findings.json").read_text())
    assert [f["id"] for f in found] == ["c1", "c2"]
    assert [f["verdict"] for f in found] == ["holds", "does not hold"]
    assert found[1]["effect"] == pytest.approx(5.0)  # 5x the FLOPs on every seed
    md = (out / "report.md").read_text()
    assert md.index("## Findings") < md.index("## Summary") < md.index("## Comparison")
    assert re.search(r"\| c1: ppo beats sft \| \*\*holds\*\* \| 0\.587 \[", md), md
    html = (out / "report.html").read_text()
    assert html.index('id="findings"') < html.index('id="summary"')
    assert 'data-claim="c2" data-verdict="does not hold"' in html
    assert '<a href="#comparison">comparison table</a>' in html  # no such figure: the table
    # a claim's text is text: in the page (autoescaped) and in report.md's table
    hostile = claims_folder(tmp_path / "hostile", [{**CLAIM, "claim": "a | b\n<img src=x>"}])
    md = (hostile / "report.md").read_text()
    assert "| c1: a \\| b &lt;img src=x&gt; | **holds**" in md and "<img" not in md
    assert "<img src=x>" not in (hostile / "report.html").read_text()
    # a matrix without claims writes an empty findings.json and no section
    plain = claims_folder(tmp_path / "plain", [])
    assert json.loads((plain / "findings.json").read_text()) == []
    assert "## Findings" not in (plain / "report.md").read_text()


def test_a_tampered_claims_table_is_one_line(tmp_path):
    from reports.build import ReportError
    out = claims_folder(tmp_path, [CLAIM])
    toml = out / "matrix.toml"
    toml.write_text(toml.read_text().replace('expect = "greater"', 'expect = "bigger"'))
    with pytest.raises(ReportError, match="claims cannot be read") as e:
        build_report(out)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_claims_preset_end_to_end_on_a_small_world(tmp_path):
    """The claims preset's own claims table on the smoke world at three seeds (the full preset
    runs on demand: tests/test_science.py): every claim gets a verdict, each recomputed here
    from results.jsonl alone, and the one structural claim, DPO's training FLOPs below PPO's,
    holds, as it must whatever the seeds."""
    from bench.cli import run_matrix
    smoke = config.load("smoke").model_dump(mode="json")
    full = config.load("claims").model_dump(mode="json")
    m = config.parse({
        **smoke, "name": "claims-small", "seeds": [100, 101, 102], "methods": full["methods"],
        "scenario": {"name": "micro", "options": {**smoke["scenario"]["options"],
                                                  **full["scenario"]["options"]}},
        "eval": {**smoke["eval"], "win_rate": {**smoke["eval"]["win_rate"],
                                               "references": full["eval"]["win_rate"]["references"]}},
        # the 3-round PPO variant runs the preset's 3 x 13 steps of the smoke world's 16
        "budget": {**smoke["budget"], "rollouts": 700},
        "sweep": full["sweep"], "claims": full["claims"], "progress": False})
    run_matrix(m, tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
    from bench.config import COST_FIELDS
    # what claims may read: every cost that is a number (or a table of them); dollars only
    # where the matrix sets prices (the report prices the cells), which this one does not
    assert all({k for k, v in r["cost"].items() if not isinstance(v, str)}
               == set(COST_FIELDS) - {"dollars"} for r in recs), recs[0]["cost"].keys()
    found = {f["id"]: f for f in json.loads((tmp_path / "findings.json").read_text())}
    assert list(found) == [c["id"] for c in full["claims"]]
    assert found["6a"]["verdict"] == "holds" and found["6a"]["hi"] < 1
    by = {}
    for r in recs:
        label = r["method"] + "".join(f" [{k}={v}]" for k, v in sorted(r["point"].items()))
        by.setdefault(label, {})[r["seed"]] = r
    for c in full["claims"]:
        f = found[c["id"]]
        assert f["verdict"] in ("holds", "does not hold", "not resolved", "not measured")
        other = by.get(c.get("against") or c["method"], {})
        per = []
        for s, r in sorted(by[c["method"]].items()):
            a = value(r, c["metric"])
            b = value(other[s], c.get("against_metric") or c["metric"]) if (
                c.get("against") or c.get("against_metric")) and s in other else None
            if a is None or ((c.get("against") or c.get("against_metric")) and b is None):
                continue
            per.append(a if b is None else a / b if c.get("scale") == "ratio" else a - b)
        assert f["per_seed"] == pytest.approx(per), c["id"]
        if len(per) >= 3 and f["lo"] is not None:
            x = np.log(per) if c.get("scale") == "ratio" else np.array(per)
            lo, hi = f["lo"], f["hi"]
            if c.get("scale") == "ratio":
                lo, hi = math.log(lo), math.log(hi)
            # never narrower than the plain t-interval on the per-seed effects
            half = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
            assert hi - lo >= 2 * half - 1e-9, c["id"]
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Findings") < md.index("## Comparison")


def test_a_ratio_claim_against_a_fixed_row_stays_on_the_log_scale():
    """A ratio claim is a paired t on log ratios; the fixed-row rule (raw SEs) does not apply
    to it: a ratio of 2 against a base of about 100 gets a sane interval around 2."""
    ppo = [rec("ppo", s, {"m.a": v}, {"m.a": 5.0}) for s, v in enumerate([190.0, 200.0, 210.0])]
    base = [rec("base", s, {"m.a": 100.0}, {"m.a": 5.0}) for s in range(3)]
    f = finding(claim(against="base", scale="ratio", null=1.0), {"ppo": ppo, "base": base})
    assert 1.5 < f.lo < 2.0 < f.hi < 2.5 and f.verdict == "holds"


def test_a_claim_on_per_prompt_values_is_over_seeds_and_prompts():
    """Both rows store per-prompt values of the metric: the claim's interval is the report's
    paired difference by seed and prompt, and its test says so."""
    from bench.api import PerPrompt
    from bench.record import pack_per_prompt
    from reports.intervals import difference
    rng = np.random.default_rng(0)
    b = rng.normal(0, 0.15, 30)
    ids = [f"q{i}" for i in range(30)]

    def row(method, mu):
        out = []
        for s in range(3):
            y = np.round(mu + b + rng.normal(0, 0.1, 30), 9)
            r = rec(method, s, {"m.a": float(y.mean())}, {"m.a": 0.02})
            r["evals"] = {"m": {"per_prompt": pack_per_prompt({"a": PerPrompt.of(ids, y)})}}
            out.append(r)
        return out
    ppo, sft = row("ppo", 0.6), row("sft", 0.5)
    f = finding(claim(against="sft"), {"ppo": ppo, "sft": sft})
    est = difference(ppo, sft, "m.a")
    assert (f.effect, f.lo, f.hi) == pytest.approx((est.mean, est.lo, est.hi))
    assert "over seeds and prompts" in f.test and f.verdict == "holds"


def test_seeds_for_power_over_seeds_and_prompts_leaves_the_prompts_share_aside():
    """Known answers: over seeds and prompts, the prompts' share of the variance is no seed
    count's to reduce; it is taken from what the effect must clear (at z 0.975 + z 0.8), and
    where it alone is as large as the effect no seed count is promised."""
    from reports.findings import _seeds_needed
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert _seeds_needed(0.1, 0.05, None) == seeds_for_power(0.1, 0.05)
    left = math.sqrt(0.1 ** 2 - z * z * 0.02 ** 2)
    assert _seeds_needed(0.1, 0.05, (0.05 ** 2, 0.02 ** 2)) == seeds_for_power(left, 0.05)
    assert _seeds_needed(0.1, 0.05, (0.05 ** 2, (0.1 / z) ** 2)) is None
