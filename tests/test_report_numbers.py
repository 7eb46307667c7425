"""Known answers for the numbers the report prints: hand-written records (two methods, three
seeds, a budget sweep) whose means, intervals, paired differences and markings are computed
here by hand and checked in report.md, summary.csv and the HTML's embedded data."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from bench import output, store
from reports.assemble import assemble
from reports.build import build_report
from reports.figures import PALETTE

WIN = {("sft", 100): [0.50, 0.52, 0.48], ("dpo", 100): [0.55, 0.60, 0.58],
       ("sft", 200): [0.49, 0.51, 0.50], ("dpo", 200): [0.62, 0.66, 0.61]}
TOX = {("sft", 100): [0.10, 0.12, 0.11], ("dpo", 100): [0.05, 0.06, 0.04],
       ("sft", 200): [0.10, 0.10, 0.13], ("dpo", 200): [0.02, 0.03, 0.03]}
SE = {"win_rate.vs_sft": 0.01, "toxicity.emt": 0.001}
START = {"sft": "base", "dpo": "sft"}  # the stage each method starts from (record["start"])
T975_2 = 4.302652729911275  # Student t, 97.5%, 2 degrees of freedom (tables)


def by_hand(values, se):
    """mean, low, high: t(2) on max(sample variance, se^2) / 3."""
    x = np.array(values)
    var = max(((x - x.mean()) ** 2).sum() / 2, se * se) / 3
    return x.mean(), x.mean() - T975_2 * math.sqrt(var), x.mean() + T975_2 * math.sqrt(var)


@pytest.fixture
def out(tmp_path):
    out = output.claim(tmp_path / "out")
    plan = []
    for (method, n), wins in WIN.items():
        for seed, (w, t) in enumerate(zip(wins, TOX[(method, n)])):
            key = f"{method[0]}{n}{seed}".ljust(store.KEY_LEN, "0")
            point = {"budget.comparisons": n}
            rec = {"key": key, "method": method, "seed": seed, "point": point, "status": "ok",
                   "start": START[method],
                   "metrics": {"win_rate.vs_sft": w, "toxicity.emt": t},
                   "uncertainty": dict(SE),
                   "evals": {"win_rate": {"higher_is_better": {"vs_sft": True}, "plots": [
                                 {"title": "Win-rate against the swept budget", "kind": "sweep",
                                  "metrics": ["win_rate.vs_sft"], "key": "",
                                  "id": "budget-sweep"}]},
                             "toxicity": {"higher_is_better": {"emt": False}}},
                   "budget": {"given": {"comparisons": n}, "spent": {"comparisons": n}},
                   "provenance": {"seconds": 1.0, "matrix_name": "known-answers"}}
            store.atomic_write_json(out / "cells" / key / "result.json", rec)
            plan.append({"key": key, "method": method, "seed": seed, "point": point})
    output.write_plan(out, "known-answers", plan)
    build_report(out)
    return out


def test_means_intervals_differences_and_markings(out):
    assert 4.3026 < sps.t.ppf(0.975, 2) < 4.3027  # the table value above
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)'
                                r'</script>', (out / "report.html").read_text(), re.S).group(1))
    rows = {r["label"]: r for r in data["rows"]}
    md = (out / "report.md").read_text()
    assert list(rows) == ["sft [budget.comparisons=100]", "sft [budget.comparisons=200]",
                          "dpo [budget.comparisons=100]", "dpo [budget.comparisons=200]"]
    for (method, n), wins in WIN.items():
        row = rows[f"{method} [budget.comparisons={n}]"]
        assert row["seeds"] == [0, 1, 2]
        for metric, table in (("win_rate.vs_sft", WIN), ("toxicity.emt", TOX)):
            mean, lo, hi = by_hand(table[(method, n)], SE[metric])
            cell = row["cells"][metric]
            assert (cell["mean"], cell["lo"], cell["hi"]) == pytest.approx((mean, lo, hi))
            assert f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" in md
            if method == "sft":
                assert cell["delta"] is None
                continue
            # paired with the sft cell of the same seed at the same budget point
            diffs = np.subtract(table[(method, n)], table[("sft", n)])
            d, dlo, dhi = by_hand(diffs, math.sqrt(2) * SE[metric])
            assert (cell["delta"]["mean"], cell["delta"]["lo"], cell["delta"]["hi"]) \
                == pytest.approx((d, dlo, dhi))
            assert cell["delta"]["significant"] == (dlo > 0 or dhi < 0)
            assert cell["delta"]["better"] == ((d > 0) == (metric == "win_rate.vs_sft"))
    # by hand: dpo at 100 comparisons, win-rate differences 0.05, 0.08, 0.10: resolved, better;
    # toxicity differences -0.05, -0.06, -0.07: resolved, better (lower is better)
    win = rows["dpo [budget.comparisons=100]"]["cells"]["win_rate.vs_sft"]["delta"]
    assert win["mean"] == pytest.approx(0.07667, abs=1e-5) and win["lo"] > 0 and win["better"]
    tox = rows["dpo [budget.comparisons=100]"]["cells"]["toxicity.emt"]["delta"]
    assert tox["mean"] == pytest.approx(-0.06) and tox["hi"] < 0 and tox["better"]
    # best in column: the highest win-rate, the lowest toxicity, both dpo at 200
    best = {m: [label for label, r in rows.items() if r["cells"][m].get("best")]
            for m in ("win_rate.vs_sft", "toxicity.emt")}
    assert best == {"win_rate.vs_sft": ["dpo [budget.comparisons=200]"],
                    "toxicity.emt": ["dpo [budget.comparisons=200]"]}
    assert "Δ +0.077*" in md and "Δ -0.060*" in md


def test_summary_csv_holds_every_cell_value(out):
    rows = list(csv.DictReader(open(out / "summary.csv", newline="")))
    assert len(rows) == 12
    for r in rows:
        method, n = r["method"], json.loads(r["point"])["budget.comparisons"]
        seed = int(r["seed"])
        assert float(r["win_rate.vs_sft"]) == WIN[(method, n)][seed]
        assert float(r["toxicity.emt"]) == TOX[(method, n)][seed]
        assert float(r["win_rate.vs_sft.se"]) == SE["win_rate.vs_sft"]


def test_an_exact_tie_awards_no_best(tmp_path):
    out = output.claim(tmp_path / "out")
    for i, method in enumerate(("sft", "dpo")):
        for seed in range(2):
            key = f"{method}{seed}".ljust(store.KEY_LEN, "0")
            store.atomic_write_json(out / "cells" / key / "result.json", {
                "key": key, "method": method, "seed": seed, "point": {}, "status": "ok",
                "start": START[method], "metrics": {"kl.k1": 0.0},
                "evals": {"kl": {"higher_is_better": {"k1": False}}},
                "budget": {"spent": {}}, "provenance": {}})
    build_report(out)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>',
                                (out / "report.html").read_text(), re.S).group(1))
    assert not any(r["cells"]["kl.k1"].get("best") for r in data["rows"])


def report_data(out):
    return json.loads(re.search(r'id="report-data">(.*?)</script>',
                                (out / "report.html").read_text(), re.S).group(1))


def test_rows_and_colours_follow_the_plan_and_the_sweep_is_drawn(out):
    """Rows in the plan's method order (not alphabetical, not hard-coded), colours by position
    in it, and the figure the win-rate records declare (a sweep over the swept budget)."""
    plan = json.loads((out / output.MARKER / "plan.json").read_text())
    plan["cells"].sort(key=lambda c: c["method"] != "dpo")  # dpo first now
    (out / output.MARKER / "plan.json").write_text(json.dumps(plan))
    d = assemble(out)
    assert d.methods == ["dpo", "sft"] and d.reference == "sft"
    assert d.colors == {"dpo": PALETTE[0], "sft": PALETTE[1]}
    assert [r.label for r in d.rows][:2] == ["dpo [budget.comparisons=100]",
                                             "dpo [budget.comparisons=200]"]
    build_report(out)
    html = (out / "report.html").read_text()
    assert re.findall(r'<figure id="([^"]+)"', html) == [
        "fig-metrics", "fig-budget-sweep", "fig-toxicity-bars"]  # toxicity declares none
    assert "Δ vs sft" in html


def test_the_report_prices_each_cell_at_the_matrix_prices(out):
    """cost.dollars is each cell's spent units times the matrix's [prices] (OUT/matrix.toml),
    computed when the report is built and written to results.jsonl, never into the cell: a
    price change reprices every cell without rerunning one; a folder without prices has no
    dollars; an unreadable price is one line."""
    from reports.build import ReportError
    assert all("dollars" not in (json.loads(x).get("cost") or {})
               for x in (out / "results.jsonl").read_text().splitlines())
    for price in (1.0, 0.25):
        (out / "matrix.toml").write_text(f"name = 'known-answers'\n[prices]\ncomparisons = {price}\n")
        build_report(out)
        recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        assert {(r["method"], r["point"]["budget.comparisons"], r["cost"]["dollars"])
                for r in recs} == {(m, n, n * price) for m, n in WIN}
        assert all(r["prices"] == {"comparisons": price} for r in recs)
    assert all("dollars" not in json.dumps(json.loads(f.read_text()).get("cost"))
               for f in (out / "cells").glob("*/result.json"))
    (out / "matrix.toml").write_text("[prices]\ncomparisons = -1\n")
    with pytest.raises(ReportError, match="its prices cannot be read"):
        build_report(out)


def test_priced_cells_draw_the_win_rate_against_the_dollars_they_spent(out):
    """Cells that priced their spending (cost.dollars, from the matrix's prices) add a panel to
    the sweep figure: each row at its mean dollars and its mean win-rate, one line per method
    (and variant) through its budget points in order of dollars (claim 7's gold win-rate
    against money spent)."""
    from reports.figures import sweep
    for f in (out / "cells").glob("*/result.json"):
        rec = json.loads(f.read_text())
        n = rec["point"]["budget.comparisons"]
        rec["cost"] = {"dollars": 0.0 if rec["method"] == "sft" else n * 1.5 + rec["seed"]}
        f.write_text(json.dumps(rec))
    d = assemble(out)
    panels = sweep(d, {"metrics": ["win_rate.vs_sft"]}, "win_rate")
    money = [row for p in panels for row in p.data if row["panel"].endswith("against dollars")]
    got = {row["row"]: (row["dollars"], row["win_rate.vs_sft"], row["n"]) for row in money}
    assert {row["line"] for row in money} == {"sft", "dpo"}
    for (method, n), wins in WIN.items():
        dollars = 0.0 if method == "sft" else n * 1.5 + 1.0  # seeds 0-2: mean + 1
        row = got[f"{method} [budget.comparisons={n}]"]
        assert row == (pytest.approx(dollars), pytest.approx(np.mean(wins)), 3), (method, n)
    from reports.figures import render  # and it draws, its rows in the figure's CSV
    fig = next(f for f in render(d) if f.id == "budget-sweep")
    assert fig.src.startswith("data:image/png") and \
        sum(r["panel"].endswith("against dollars") for r in fig.data) == len(WIN)


def test_no_stage_among_the_methods_means_no_paired_difference(out):
    """The reference of Δ is the stage the records start from; where no record names one
    that is a method of the matrix, there is no Δ at all (and no sentence about one)."""
    for f in (out / "cells").glob("*/result.json"):
        rec = json.loads(f.read_text())
        f.write_text(json.dumps({**rec, "start": "base"}))
    build_report(out)
    assert all(c["delta"] is None for r in report_data(out)["rows"] for c in r["cells"].values())
    assert "Δ" not in (out / "report.md").read_text()
    assert "Δ vs" not in (out / "report.html").read_text()


def test_a_reference_that_a_budget_sweep_left_alone_pairs_with_every_point():
    """Under a comparisons sweep the SFT row runs once, with no point; each dpo cell pairs with
    the SFT cell of its own seed. Under a demonstrations sweep SFT has a point per value and
    pairs exactly; a reference at another seed or another point never pairs."""
    from reports.records import paired_reference
    sft = [{"seed": s, "point": {}} for s in (0, 1)]
    assert paired_reference({"seed": 1, "point": {"budget.comparisons": 300}}, sft) is sft[1]
    per_demo = [{"seed": 0, "point": {"budget.demonstrations": d}} for d in (16, 32)]
    cell = {"seed": 0, "point": {"budget.demonstrations": 32, "budget.comparisons": 300}}
    assert paired_reference(cell, per_demo + sft) is per_demo[1]  # the most specific one
    assert paired_reference({"seed": 2, "point": {}}, sft) is None
    assert paired_reference({"seed": 0, "point": {"budget.demonstrations": 64}}, per_demo) is None


def test_the_summary_names_the_best_row_and_resolves_it_against_the_runner_up_by_hand(out):
    """win_rate.vs_sft: dpo at 200 comparisons is best (0.630), dpo at 100 the runner-up
    (0.577); their paired difference over seeds 0-2, with each side's SE of 0.01, is resolved
    exactly when the by-hand interval excludes 0. toxicity.emt (lower is better) likewise."""
    md = (out / "report.md").read_text()
    summary = md[md.index("## Summary"):md.index("## Comparison")]
    for metric, higher in (("win_rate.vs_sft", True), ("toxicity.emt", False)):
        table = WIN if metric == "win_rate.vs_sft" else TOX
        means = {k: np.mean(v) for k, v in table.items()}
        order = sorted(means, key=lambda k: -means[k] if higher else means[k])
        (bm, bn), (rm, rn) = order[0], order[1]
        diffs = [a - b for a, b in zip(table[order[0]], table[order[1]])]
        d, lo, hi = by_hand(diffs, math.hypot(SE[metric], SE[metric]))
        line = next(x for x in summary.splitlines() if x.startswith(f"| {metric} "))
        assert f"| {bm} [budget.comparisons={bn}] |" in line, line
        assert f"| {rm} [budget.comparisons={rn}] ({means[order[1]]:.3f}) |" in line, line
        assert f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" in line, line
        raw, adjusted = (x.strip() for x in line.rstrip().rstrip("|").split("|")[-2:])
        assert raw == ("yes" if (lo > 0 or hi < 0) else "no"), line
        # after Benjamini-Hochberg over the summary's metrics: never more than raw
        assert adjusted in ("yes", "no") and (adjusted == "no" or raw == "yes"), line


def test_pareto_front_known_answers():
    """Win-rate up, toxicity down: a row better on both beats one, a trade-off keeps both."""
    from reports.figures import pareto_front
    pts = {"ppo": (0.56, 0.07), "dpo": (0.54, 0.13), "bon": (0.53, 0.01), "sft": (0.49, 0.26),
           "twin": (0.56, 0.07)}
    assert pareto_front(pts, True, False) == ["ppo", "bon", "twin"]  # equal points both stay
    assert pareto_front({"a": (1, 1), "b": (2, 2)}, True, True) == ["b"]
    assert pareto_front({"a": (1, 1), "b": (2, 2)}, False, False) == ["a"]
    assert pareto_front({"a": (1, 2), "b": (2, 1)}, True, True) == ["a", "b"]


def _simulated_pairs(rng, theta, beta, gamma, d_shift, per_prompt=4, d_sd=5.0):
    """Pairs drawn from the joint model itself, and each cell's true LC rate."""
    from scipy.special import expit
    from reports.length_control import Pairs
    cells, truth = [], []
    prompts = [f"p{i}" for i in range(len(gamma))]
    for t, b, s in zip(theta, beta, d_shift):
        pid = [p for p in prompts for _ in range(per_prompt)]
        g = np.repeat(gamma, per_prompt)
        d = rng.normal(s, d_sd, len(pid))
        sd_all = d_sd  # the fit standardizes by the pooled spread; near d_sd here
        y = (rng.random(len(pid)) < expit(t + g + b * np.tanh(d / sd_all))).astype(float)
        cells.append(Pairs(pid, y.tolist(), d.tolist()))
        truth.append(float(expit(t + gamma).mean()))
    return cells, truth


def test_joint_length_control_equals_the_raw_rate_without_length_differences():
    """Known answer: with every length difference 0 the length term is empty, and the fit's
    score equation for each cell's θ (which has no prior) makes the mean fitted rate over the
    cell's pairs equal its raw rate: LC = raw to the optimizer's tolerance."""
    from reports.length_control import Pairs, joint_length_controlled
    rng = np.random.default_rng(0)
    cells = [Pairs([f"p{i // 4}" for i in range(80)],
                   rng.choice([0.0, 0.5, 1.0], 80, p=[0.5 - q, 0.1, 0.4 + q]).tolist(),
                   [0.0] * 80) for q in (-0.2, 0.0, 0.1, 0.3)]
    lc = joint_length_controlled(cells)
    raw = [float(np.mean(c.pref)) for c in cells]
    assert lc == pytest.approx(raw, abs=1e-4)


def test_joint_length_control_equals_the_raw_rate_with_unequal_pairs_per_prompt():
    """The rate is weighted by pairs, like the raw rate: a prompt judged 11 times and others
    once each still give LC = raw when no length differs."""
    from reports.length_control import Pairs, joint_length_controlled
    rng = np.random.default_rng(3)
    cells = []
    for _ in range(3):
        prompts = ["hard"] * 11 + [f"p{i}" for i in range(9)]
        pref = [0.0] * 11 + rng.choice([0.0, 1.0], 9).tolist()
        cells.append(Pairs(prompts, pref, [0.0] * 20))
    lc = joint_length_controlled(cells)
    assert lc == pytest.approx([float(np.mean(c.pref)) for c in cells], abs=1e-4)


def test_joint_length_control_recovers_the_equal_length_rate_of_a_length_biased_cell():
    """Simulated from the model: a cell whose answers are longer and whose wins follow length
    has a raw rate far above its equal-length rate; the joint fit (24 cells x 60 prompts x 8
    pairs) removes at least two thirds of that bias, every cell's estimate is within 0.08 of
    its true equal-length rate (the noise of 480 pairs plus the length slope's confounding with
    the shift), and the cells without a length effect keep their raw rates to 0.02."""
    from reports.length_control import joint_length_controlled
    for seed in (1, 5):
        rng = np.random.default_rng(seed)
        n = 24
        theta = rng.normal(0, 0.5, n)
        beta = np.where(np.arange(n) == 0, 2.5, 0.0)
        shift = np.where(np.arange(n) == 0, 6.0, 0.0)
        cells, truth = _simulated_pairs(rng, theta, beta, rng.normal(0, 1.0, 60), shift,
                                        per_prompt=8)
        lc = joint_length_controlled(cells)
        raw = [float(np.mean(c.pref)) for c in cells]
        assert raw[0] - truth[0] > 0.15  # the bias is real in the raw rate
        assert abs(lc[0] - truth[0]) < (raw[0] - truth[0]) / 3
        assert lc == pytest.approx(truth, abs=0.08)
        assert lc[1:] == pytest.approx(raw[1:], abs=0.02)


def test_matrix_length_control_reads_stored_pairs_and_skips_old_records():
    from reports.length_control import cell_pairs as pairs_of, matrix_length_control
    decl = {"pairs": "pairs", "prompt_ids": "prompt_ids", "lc_prefix": "lc_"}

    def cell_pairs(r, name):
        return pairs_of(r, "win_rate", decl, name)
    def rec(key, pref, la, lb):
        return {"key": key, "evals": {"win_rate": {"extra": {
            "prompt_ids": ["a", "b"], "pairs": {"vs_sft": {
                "prompt": [0, 0, 1, 1], "pref": pref, "len_method": la,
                "len_reference": lb}}}}}}
    ok = [rec("x", [1, 0, 1, 1], [3, 3, 3, 3], [3, 3, 3, 3]),
          rec("y", [0, 0, 1, 0.5], [3, 3, 3, 3], [3, 3, 3, 3]),
          {"key": "old", "evals": {"win_rate": {"extra": {}}}}]
    assert cell_pairs(ok[0], "vs_sft").prompt == ["a", "a", "b", "b"]
    assert cell_pairs(ok[2], "vs_sft") is None
    bad = rec("z", [1, 0], [3], [3])  # lengths that do not match
    assert cell_pairs(bad, "vs_sft") is None
    for ids, index in (([["a"], ["b"]], [0, 0, 1, 1]), (["a", "b"], [0, 0, 1, -1])):
        broken = rec("w", [1, 0, 1, 1], [3] * 4, [3] * 4)  # unhashable ids, an index that wraps
        broken["evals"]["win_rate"]["extra"].update(prompt_ids=ids)
        broken["evals"]["win_rate"]["extra"]["pairs"]["vs_sft"]["prompt"] = index
        assert cell_pairs(broken, "vs_sft") is None
    got = matrix_length_control(ok + [bad], {"win_rate": decl})
    assert set(got) == {("win_rate", "vs_sft")} and set(got["win_rate", "vs_sft"]) == {"x", "y"}
    assert got["win_rate", "vs_sft"]["x"] == pytest.approx(0.75, abs=1e-4)  # no length
    assert got["win_rate", "vs_sft"]["y"] == pytest.approx(0.375, abs=1e-4)  # differences: raw
    assert matrix_length_control(ok, {}) == {}  # no eval declares pairs: no joint fit


def test_length_rows_floor_the_joint_interval_by_the_per_cell_lc_error():
    """Known answer: where the joint rate equals each seed's per-cell LC, its interval is the
    per-cell LC's (floored by the same per-seed standard errors), never the narrower
    interval of the seed spread alone; the gap is the mean of joint minus raw."""
    from reports.length_control import length_rows
    lc = [0.60, 0.61, 0.62]
    rs = [{"key": f"k{i}", "metrics": {"win_rate.vs_sft": 0.55, "win_rate.lc_vs_sft": v},
           "uncertainty": {"win_rate.vs_sft": 0.03, "win_rate.lc_vs_sft": 0.04}}
          for i, v in enumerate(lc)]
    (row,) = length_rows({"ppo": rs}, {("win_rate", "vs_sft"): {f"k{i}": v for i, v in
                                                                enumerate(lc)}},
                         {"win_rate": {"pairs": "pairs", "prompt_ids": "prompt_ids",
                                       "lc_prefix": "lc_"}})
    assert row.joint == pytest.approx(row.lc)
    half = row.joint[2] - row.joint[0]
    assert half > 0.04  # the floor: a t-interval on the spread alone is 0.025 wide each side
    assert row.gap == pytest.approx(0.06) and not row.warn and row.reference == "vs_sft"
