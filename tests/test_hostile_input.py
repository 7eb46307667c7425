"""Hostile input, class by class, through the command line's entry point in-process: each is
one line, exit 2, and nothing created, before a world is built or a folder made."""

from __future__ import annotations

import pytest

from bench import cli, config, runner
from bench.config import Claim
from reports.findings import findings


@pytest.fixture
def no_run(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the matrix was accepted and the run started")
    monkeypatch.setattr(runner, "run", refuse)


def refused(capsys, tmp_path, *args: str, matrix: str = "smoke") -> str:
    out = tmp_path / "out"
    code = cli.main(["run", matrix, *args, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("alignbench: error: "), err
    assert "; " in lines[0] and "Traceback" not in err, lines[0]
    assert not out.exists()
    return lines[0]


# --------------------------------------------------------------------------- no methods


@pytest.mark.parametrize("given", [",", "", " , ,"])
def test_an_empty_method_list_is_refused(given, capsys, tmp_path, no_run):
    assert "names no method" in refused(capsys, tmp_path, "--methods", given)


def test_a_matrix_file_with_no_methods_is_refused(capsys, tmp_path, no_run):
    f = tmp_path / "m.toml"
    f.write_text("methods = []\n")
    assert "'methods'" in refused(capsys, tmp_path, matrix=str(f))


# --------------------------------------------------------------------------- non-finite floats


@pytest.mark.parametrize("sets, path", [
    (["--methods", "dpo", "--set", "method.dpo.beta=inf"], "method.dpo.beta"),
    (["--methods", "ppo", "--set", "method.ppo.kl_coef=-inf"], "method.ppo.kl_coef"),
    (["--methods", "base", "--set", "budget.flops=inf"], "budget.flops"),
    (["--methods", "base", "--set", "eval.toxicity.temperature=inf"],
     "eval.toxicity.temperature"),
    (["--methods", "dpo", "--set", "sweep.dpo=[{beta = nan}]"], "method.dpo.beta"),
    (["--methods", "dpo", "--set", "sweep.dpo.beta=[0.1, inf]"], "method.dpo.beta"),
    (["--methods", "base", "--set", "sweep.budget.flops=[1e9, inf]"], "budget.flops"),
    (["--methods", "base", "--set", "resources.num_cpus=inf"], "resources.num_cpus"),
    (["--methods", "base", "--set", "prices.comparisons=nan"], "prices.comparisons"),
    (["--methods", "base", "--set", "scenario.options.lr=inf"], "scenario.options.lr"),
])
def test_non_finite_floats_are_refused_wherever_they_are_written(sets, path, capsys, tmp_path,
                                                                 no_run):
    line = refused(capsys, tmp_path, *sets)
    assert path in line and ("finite" in line or "nan" in line or "inf" in line), line


def test_non_finite_floats_in_a_matrix_file(capsys, tmp_path, no_run):
    f = tmp_path / "m.toml"
    f.write_text('methods = ["dpo"]\n[method.dpo]\nbeta = inf\n')
    assert "'method.dpo.beta': must be a finite number" in refused(capsys, tmp_path,
                                                                   matrix=str(f))


# --------------------------------------------------------------------------- scenario options


@pytest.mark.parametrize("option, expect", [
    ("heads=3", "heads (3) must divide hidden (32)"),
    ("hidden=0", "scenario.options.hidden"), ("batch_size=0", "scenario.options.batch_size"),
    ("p_concise=-1", "scenario.options.p_concise"), ("p_concise=nan", "finite"),
    ("panel_size=0", "scenario.options.panel_size"),
    ("n_eval_prompts=0", "scenario.options.n_eval_prompts"),
    ("max_new_tokens=0", "scenario.options.max_new_tokens"),
])
def test_scenario_options_are_refused_before_anything_is_created(option, expect, capsys,
                                                                   tmp_path, no_run):
    line = refused(capsys, tmp_path, "--methods", "base", "--set", f"scenario.options.{option}")
    assert expect in line, line


def test_all_answer_styles_at_zero_is_refused(capsys, tmp_path, no_run):
    sets = [x for s in ("concise", "verbose", "toxic", "hedged", "expert")
            for x in ("--set", f"scenario.options.p_{s}=0.0")]
    assert "all 0" in refused(capsys, tmp_path, "--methods", "base", *sets)


# --------------------------------------------------------------------------- claims


def claim_sets(**kw) -> list[str]:
    table = ", ".join(f"{k} = {v}" for k, v in {"id": '"c"', "claim": '"x"', "method": '"base"',
                                                 "metric": '"truthfulqa.mc1"', **kw}.items())
    return ["--methods", "base", "--set", f"claims=[{{{table}}}]"]


@pytest.mark.parametrize("kw, expect", [
    ({"metric": '"cost.phase_seconds"'}, "name one, e.g. cost.phase_seconds.training"),
    ({"metric": '"cost.train_flops.nosuch"'}, "cost.train_flops is one number"),
    ({"metric": '"cost.dollars"'}, "needs the matrix's [prices]"),
    ({"metric": '"cost.nosuch"'}, "cost has no 'nosuch'"),
    ({"null": "nan"}, "'claims.0.null': must be a finite number"),
    ({"null": "inf"}, "'claims.0.null': must be a finite number"),
    ({"expect": '"within"', "range": "[0.0, inf]"}, "'claims.0.range.1'"),
])
def test_a_claim_on_a_metric_that_cannot_exist_is_refused(kw, expect, capsys, tmp_path, no_run):
    line = refused(capsys, tmp_path, *claim_sets(**kw))
    assert expect in line, line


def test_dollars_with_prices_is_a_claim_that_can_be_tested():
    m = config.load("smoke")
    ok = config.overridden(m, methods=["base"], sets=[
        "prices.comparisons=1.0", 'claims=[{id = "c", claim = "x", method = "base", metric = '
        '"cost.dollars"}]'])
    assert ok.claims[0].metric == "cost.dollars"


def _rec(seed: int) -> dict:
    return {"key": f"k{seed}", "method": "base", "seed": seed, "point": {}, "status": "ok",
            "metrics": {"truthfulqa.mc1": 0.5, "truthfulqa.mc1.Adversarial": 0.4},
            "uncertainty": {}, "movement": None,
            "cost": {"train_flops": 0.0, "phase_seconds": {"training": 1.0, "eval kl": 2.0}}}


@pytest.mark.parametrize("metric, expect", [
    ("truthfulqa.mc1.NoSuchSlice", "it reports truthfulqa.mc1.Adversarial"),
    ("cost.phase_seconds.nosuch", "it reports cost.phase_seconds.eval kl, "
                                  "cost.phase_seconds.training"),
])
def test_a_slice_or_phase_no_cell_reports_is_named_not_blamed_on_seeds(metric, expect):
    """Slices and phases depend on the data and the trainers, so the report names one that
    no cell measured, and never asks for more seeds."""
    claim = Claim(id="c", claim="x", method="base", metric=metric)
    f = findings([_rec(s) for s in range(5)], [claim])[0]
    assert f.verdict == "not measured" and f.seeds_needed is None
    assert f"no finished cell of base reports {metric}" in f.note and expect in f.note, f.note
    assert "seeds are needed" not in f.note and "more seeds cannot" in f.note
    real = findings([_rec(s) for s in range(5)],
                    [Claim(id="c", claim="x", method="base", metric="truthfulqa.mc1.Adversarial",
                           expect="within", range=[0.3, 0.5])])[0]
    assert real.verdict != "not measured", real.note  # a slice that is there is measured


# --------------------------------------------------------------------------- library output


@pytest.mark.parametrize("config_json", ['{"model_type": "nosuchmodel"}',
                                         '{"model_type": "nosuchmodel", "architectures": ["X"]}'])
def test_a_model_of_an_unknown_type_is_one_line(tmp_path, config_json):
    """transformers resets its logger's level when it is first imported, after the command
    line set it: its warning about the unknown type came before the error's one line."""
    import os
    import subprocess
    import sys
    (tmp_path / "config.json").write_text(config_json)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_VERBOSITY")}
    p = subprocess.run([sys.executable, "-m", "bench.cli", "eval", "truthfulqa", "--model",
                        str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith(f"alignbench: error: cannot load model {tmp_path}"), lines[0]
    assert p.stdout == ""
