"""What the report reads from an eval is what the eval declares: its figures by id (checked
before anything runs), its descriptive metrics, its ranking metric and its length-control
pairs, found through the declarations each cell record stores; never a built-in eval's name."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import resources

import pytest

from bench import store
from bench.api import Plot
from bench.api.evaluation import (STANDING_FIGURES, DeclarationError, LengthPairs,
                                  declarations, declared_figures)
from bench.errors import UserError
from bench.registry import builtin_names, resolve
from reports.build import build_report


def builtin_evals() -> list:
    return [resolve("evals", name) for name in builtin_names("evals")]


class Echo:
    """A plugin eval that declares everything the report can read from an eval."""

    name = "echo"
    metrics = {"length": True, "score": True, "win": True, "lc_win": True}
    descriptive = ("length",)
    ranking_metric = "score"
    length_pairs = LengthPairs(pairs="judged", prompt_ids="ids", lc_prefix="lc_")
    figures = (Plot("Echo scores", "bars", ("echo.score",), id="echo-scores"),)


# ---------------------------------------------------------------- figures, statically


def test_a_claim_naming_a_figure_id_that_no_eval_declares_is_found_before_anything_runs():
    """The preflight's check: a claim's figure is an id of declared_figures(the matrix's
    evals); a typo is not, and nothing had to run to know it."""
    figures = declared_figures(builtin_evals())
    assert "trade-ofs" not in figures and "Trade-offs" not in figures
    assert {"trade-offs", "overoptimization", "labeler-agreement", "truthfulqa-slices",
            "budget-sweep", "metrics", "training-curves"} <= set(figures)
    # the figure an eval declares is there only when the eval is in the matrix
    assert "budget-sweep" not in declared_figures([resolve("evals", "kl")])
    assert set(declared_figures([])) == {p.id for p in STANDING_FIGURES}


def test_every_preset_claim_names_a_declared_figure_of_its_matrix():
    figures = declared_figures(builtin_evals())
    for preset in ("claims.toml", "prices.toml"):
        text = resources.files("bench.presets").joinpath(preset).read_text()
        matrix = tomllib.loads(text)
        evals = [resolve("evals", e) for e in matrix.get("evals", builtin_names("evals"))]
        ids = declared_figures(evals)
        for claim in matrix["claims"]:
            if claim.get("figure"):
                assert claim["figure"] in ids, (preset, claim["id"], claim["figure"])
                assert claim["figure"] in figures


def test_two_evals_sharing_a_figure_id_share_its_title_or_are_refused():
    """kl's and toxicity's trade-off plots are one figure by id; a plugin that reuses an id
    with another title is refused, naming both titles."""
    kl, tox = resolve("evals", "kl"), resolve("evals", "toxicity")
    assert declared_figures([kl, tox])["trade-offs"].title == \
        [p for p in tox.figures if p.id == "trade-offs"][0].title

    class Clash:
        name = "clash"
        figures = (Plot("Something else", "bars", ("clash.x",), id="trade-offs"),)
    with pytest.raises(DeclarationError, match="two titles") as err:
        declared_figures([kl, Clash()])
    assert isinstance(err.value, UserError)


def test_a_plot_has_a_short_stable_id():
    assert Plot("Labeler agreement", "matrix", key="m").id == "labeler-agreement"
    assert Plot("x", id="my-figure").id == "my-figure"
    for bad in ("Trade offs", "UPPER", "-lead", "a" * 41, "a/b"):
        with pytest.raises(DeclarationError, match="not lower-case"):
            Plot("t", id=bad)


def test_each_builtin_eval_declares_the_figures_its_results_carry():
    """What the preflight checks claims against is what the report draws: an eval's results
    carry only plots its class declares (the same objects: the evals return list(PLOTS))."""
    import importlib
    for ev in builtin_evals():
        module = importlib.import_module(type(ev).__module__)
        assert tuple(module.PLOTS) == tuple(ev.figures), ev.name


# ---------------------------------------------------------------- declarations, stored


def test_declarations_are_checked_against_the_evals_own_metrics():
    stored = declarations(Echo())
    assert stored == {"descriptive": ["length"], "ranking_metric": "score",
                      "length_pairs": {"pairs": "judged", "prompt_ids": "ids",
                                       "lc_prefix": "lc_"}}
    assert json.loads(json.dumps(stored)) == stored  # stored in a record as it is
    assert declarations(resolve("evals", "win_rate"))["ranking_metric"] == "vs_sft"
    assert declarations(resolve("evals", "kl")) == {
        "descriptive": [], "ranking_metric": None, "length_pairs": None}

    class Typo(Echo):
        ranking_metric = "scroe"
    with pytest.raises(DeclarationError, match="'scroe' is declared but is not one"):
        declarations(Typo())

    class RankedDescriptive(Echo):
        ranking_metric = "length"
    with pytest.raises(DeclarationError, match="descriptive"):
        declarations(RankedDescriptive())


def echo_record(method: str, seed: int, length: float, score: float, **evals) -> dict:
    win = [1.0, 0.0, 1.0, 1.0] if method == "tuned" else [0.0, 1.0, 0.0, 1.0]
    return {"key": f"{method}{seed}".ljust(store.KEY_LEN, "0"), "method": method, "seed": seed,
            "point": {}, "status": "ok", "start": "base" if method == "ref" else "ref",
            "metrics": {"echo.length": length, "echo.score": score,
                        "echo.win": sum(win) / 4, "echo.lc_win": sum(win) / 4},
            "uncertainty": {"echo.length": 0.01, "echo.score": 0.01, "echo.win": 0.05,
                            "echo.lc_win": 0.05},
            "evals": {"echo": {"higher_is_better": dict(Echo.metrics), "extra": {
                "ids": ["p", "q"], "judged": {"win": {
                    "prompt": [0, 0, 1, 1], "pref": win, "len_method": [3, 4, 3, 4],
                    "len_reference": [3, 3, 3, 3]}}},
                "plots": [{"title": "Echo scores", "kind": "bars",
                           "metrics": ["echo.score"], "key": "", "id": "echo-scores"}],
                **evals}},
            "budget": {"given": {}, "spent": {}}, "provenance": {"seconds": 1.0}}


def echo_out(tmp_path, declared: bool):
    out = tmp_path / ("declared" if declared else "bare")
    extra = dict(declarations(Echo())) if declared else {}
    for seed in range(3):
        for method, length, score in (("ref", 10.0 + seed, 0.4), ("tuned", 30.0 + seed, 0.6)):
            r = echo_record(method, seed, length, score + seed / 100, **extra)
            store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
    build_report(out)
    return out


def test_a_descriptive_metric_is_never_best_nor_sorted_best_first_nor_coloured(tmp_path):
    out = echo_out(tmp_path, declared=True)
    html = (out / "report.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    rows = {r["label"]: r for r in data["rows"]}
    length = rows["tuned"]["cells"]["echo.length"]
    assert not any(r["cells"]["echo.length"].get("best") for r in rows.values())
    assert rows["tuned"]["cells"]["echo.score"].get("best")  # a directional one is
    assert length["delta"]["significant"] and length["delta"]["better"] is None
    header = re.search(r'<th [^>]*title="echo.length">[^<]*', html).group(0)
    assert "data-higher" not in header and "↑" not in header and "↓" not in header
    assert 'data-higher="1" title="echo.score"' in html
    cell = re.search(r'data-metric="echo.length"[^>]*>.*?</td>', html.split(
        'data-row="tuned"')[1], re.S).group(0)
    assert "sigflat" in cell and "sigworse" not in cell and '"ci sig"' not in cell
    md = (out / "report.md").read_text()
    assert "echo.length ·" in md and "echo.score ↑" in md
    summary = [line for line in md.splitlines() if line.startswith("| echo.")]
    assert not any(line.startswith("| echo.length") for line in summary)


def test_ranking_and_length_control_come_from_the_declarations_alone(tmp_path):
    """A plugin eval's declared ranking metric ranks the rows and its declared pairs feed
    the joint length control, under its own keys; records without declarations get neither
    (no eval name to fall back to)."""
    out = echo_out(tmp_path, declared=True)
    ranking = json.loads((out / "ranking.json").read_text())
    assert ranking["metric"] == "echo.score"
    assert [r["label"] for r in ranking["rows"]] == ["tuned", "ref"]
    md = (out / "report.md").read_text()
    assert "## Ranking on echo.score" in md
    length = md.split("## Length control")[1]
    assert "| win | tuned |" in length and "| win | ref |" in length
    bare = echo_out(tmp_path, declared=False)
    assert json.loads((bare / "ranking.json").read_text()) is None
    text = (bare / "report.md").read_text()
    assert "## Ranking" not in text and "## Length control" not in text


def test_a_claim_links_to_its_figure_by_id(tmp_path):
    out = echo_out(tmp_path, declared=True)
    (out / "matrix.toml").write_text(
        '[[claims]]\nid = "e1"\nclaim = "tuned scores higher"\nmetric = "echo.score"\n'
        'method = "tuned"\nagainst = "ref"\nfigure = "echo-scores"\n'
        '[[claims]]\nid = "e2"\nclaim = "typo"\nmetric = "echo.score"\nmethod = "tuned"\n'
        'figure = "echo-scroes"\n')
    build_report(out)
    html = (out / "report.html").read_text()
    assert '<figure id="fig-echo-scores">' in html
    e1 = html.split('data-claim="e1"')[1].split("</tr>")[0]
    e2 = html.split('data-claim="e2"')[1].split("</tr>")[0]
    assert '<a href="#fig-echo-scores">Echo scores</a>' in e1
    assert '<a href="#comparison">' in e2


def test_a_stored_figure_id_no_eval_could_declare_is_not_put_on_the_page(tmp_path):
    out = tmp_path / "out"
    for seed in range(3):
        r = echo_record("ref", seed, 1.0, 0.5)
        r["evals"]["echo"]["plots"][0]["id"] = '" onclick="x'
        store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
    build_report(out)
    assert '<figure id="fig-echo-scores">' in (out / "report.html").read_text()


# ---------------------------------------------------------------- the report reads no matrix


def test_reports_import_no_matrix_validation():
    """The report reads what the run stored with its own typed reading: importing all of it
    loads neither bench.config nor a method or an eval."""
    code = ("import sys, reports.build, reports.assemble, reports.findings; "
            "bad=[m for m in sys.modules if m == 'bench.config' "
            "or m.split('.')[0] in ('methods', 'evals')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_reports_row_names_are_the_ones_claims_are_checked_against():
    from bench.config import row_label, row_method
    from reports import records
    for method, point in (("ppo", {}), ("ppo", {"ppo.kl_coef": 0.0, "budget.comparisons": 300}),
                          ("rlaif", {"rlaif.constitution": ["people say"]})):
        assert records.row_label(method, point) == row_label(method, point)
        assert records.row_method(records.row_label(method, point)) == method == \
            row_method(row_label(method, point))
