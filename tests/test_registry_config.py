import subprocess
import sys
from pathlib import Path

import pytest

from bench import config, registry
from bench.cells import expand
from bench.preflight import check_budgets
from bench.config import ConfigError
from tests.plugins import FakeEP, patch_entry_points, write


def test_builtins_resolve_and_have_descriptions():
    for kind in ("methods", "evals", "scenarios"):
        for name in registry.names(kind):
            obj = registry.resolve(kind, name)
            assert obj.name == name
            assert obj.description


def test_unknown_name_did_you_mean_and_list():
    with pytest.raises(registry.UnknownName) as err:
        registry.resolve("methods", "dpoo")
    msg = str(err.value)
    assert "did you mean 'dpo'" in msg
    assert f"available: {', '.join(registry.names('methods'))}" in msg
    assert {"base", "dpo", "ppo", "rlaif", "sft", "rloo", "grpo", "kto", "simpo"} <= \
        set(registry.names("methods"))


def test_module_path_is_never_imported(monkeypatch):
    imported = []
    import importlib
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda n, *a: imported.append(n) or real(n))
    with pytest.raises(registry.UnknownName, match="never imported as module paths"):
        registry.resolve("methods", "os:system")
    assert "os" not in imported


def test_entry_point_plugin_listed_and_duplicate_rejected(monkeypatch, capsys):
    from bench.cli import main
    patch_entry_points(monkeypatch, {"alignbench.methods": [FakeEP("echo", "tests.plugins:Echo")]})
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "echo" in out and "alignbench-test-plugins" in out
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("dpo", "tests.plugins:Echo", dist="evil-dpo")]})
    with pytest.raises(registry.DuplicatePlugin, match="alignbench.*evil-dpo"):
        registry.resolve("methods", "dpo")


@pytest.mark.parametrize("toml, expect", [
    ('seeds = [0]\nfoo = 1\n', "unknown key 'foo'"),
    ('[budget]\ncomparisons = "many"\n', "'budget.comparisons'"),
    ('[budget]\nlabels = 3\n', "unknown key 'budget.labels'"),
    ('methods = ["sft", "dpoo"]\n', "did you mean 'dpo'"),
    ('methods = ["methods.dpo:DPO"]\n', "never imported as module paths"),
    ('methods = ["ppo"]\n[method.ppo]\nkl_coeff = 0.1\n', "unknown key 'method.ppo.kl_coeff'"),
    ('methods = ["ppo"]\n[method.ppo]\nkl_coef = "high"\n', "'method.ppo.kl_coef'"),
    ('[scenario.options]\nn_entites = 3\n', "unknown key 'scenario.options.n_entites'"),
    ('methods = ["sft"]\n[sweep]\n"ppo.kl_coef" = [0.0]\n', "sweep 'ppo.kl_coef'"),
    ('seeds = [0\n', "not valid TOML"),
    ('[eval.toxicity]\nkk = 3\n', "unknown key 'eval.toxicity.kk'"),
    ('[eval.toxicity]\nk = 0\n', "'eval.toxicity.k'"),
])
def test_config_errors_name_the_key(tmp_path, toml, expect):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path / "m.toml", toml))
    assert expect in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_config_error_is_one_line_without_traceback(tmp_path):
    bad = write(tmp_path / "m.toml", '[method.ppo]\nkl_coeff = 0.1\nmethods = ["ppo"]\n')
    p = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [line for line in p.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("alignbench: error:") and "Traceback" not in p.stderr


def test_presets_load_and_resolve():
    assert {"quickstart", "smoke", "zoo", "claims", "prices"} <= set(config.presets())
    for name in config.presets():
        m = config.load(name)
        res = config.resolved(m)
        assert set(res["method"]) >= set(m.methods) - {"base", "large_base"}
        if name != "prices":  # the price sweep's matrix: sft, dpo and rlaif only
            assert res["method"]["ppo"]["kl_coef"] >= 0
            assert {"base", "sft", "ppo", "dpo", "rlaif"} <= set(m.methods)
        plan = config.plan(m)
        check_budgets(expand(plan), plan)  # every preset fits its own budget


@pytest.mark.parametrize("path", sorted(
    (Path(__file__).resolve().parent.parent / "docs" / "analysis").glob("*.toml")),
    ids=lambda p: p.name)
def test_analysis_matrices_load_and_fit_their_budgets(path):
    """The measurements the README and the closing notes quote (docs/analysis/*.toml) stay
    runnable as written: they parse, resolve and pass the budget preflight."""
    m = config.load(str(path))
    plan = config.plan(m)
    check_budgets(expand(plan), plan)


def test_readme_matrix_is_valid_and_fits_its_budget():
    """The example matrices of the README and docs/ are what users copy: they parse and pass
    the preflight."""
    import re
    import tomllib
    root = Path(__file__).resolve().parent.parent
    text = "\n".join((root / p).read_text() for p in
                     ("README.md", "docs/matrix.md", "docs/cluster.md"))
    blocks = [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", text, re.S)]
    matrices = [b for b in blocks if "methods" in b]
    assert matrices, "the README shows no matrix"
    for b in matrices:
        m = config.parse(b)
        plan = config.plan(m)
        cells = expand(plan)
        check_budgets(cells, plan)
        # ppo x 4 points, dpo x 2 (the comparisons sweep), sft once: it spends no comparisons
        assert len(cells) == len(m.seeds) * (2 * 2 + 2 + 1)
    ray_blocks = [b for b in blocks if "resources" in b]  # "Running on a cluster"
    assert ray_blocks
    for b in ray_blocks:
        m = config.parse(b)
        assert m.executor == "ray" and m.resources.of("ppo").num_gpus == 1


def test_sweep_expands_only_the_swept_method():
    m = config.parse({"methods": ["sft", "ppo"], "seeds": [0, 1],
                      "sweep": {"ppo.kl_coef": [0.0, 0.05], "budget.comparisons": [100, 200]}})
    cells = expand(config.plan(m))
    ppo = [c for c in cells if c.name == "ppo"]
    sft = [c for c in cells if c.name == "sft"]
    assert len(ppo) == 2 * 2 * 2  # seeds x kl x budget
    assert len(sft) == 2  # seeds: neither the kl sweep nor the comparisons sweep touches sft
    assert {c.method_config["kl_coef"] for c in ppo} == {0.0, 0.05}
    assert all(c.point == {} and c.budget["comparisons"] == 1000 for c in sft)


def test_a_methods_variants_are_one_axis_each_table_one_row():
    """sweep.METHOD lists option tables: each is one row (the rounds-3 arm of a claim need not
    multiply the KL arm), {} is the method as configured, and the variants cross the other
    keys; a bad table is refused in one line before anything runs."""
    m = config.parse({"methods": ["sft", "ppo", "dpo"], "seeds": [0, 1],
                      "sweep": {"ppo": [{"kl_coef": 0.0}, {"rounds": 3, "steps": 13}],
                                "dpo": [{}, {"beta": 0.3}]}})
    cells = expand(config.plan(m))
    rows = {config.row_label(c.name, c.point): [] for c in cells}
    for c in cells:
        rows[config.row_label(c.name, c.point)].append(c)
    assert sorted(rows) == ["dpo", "dpo [dpo.beta=0.3]", "ppo [ppo.kl_coef=0.0]",
                            "ppo [ppo.rounds=3] [ppo.steps=13]", "sft"]
    assert all(len(v) == 2 for v in rows.values())  # once per seed, not once per product
    r3 = rows["ppo [ppo.rounds=3] [ppo.steps=13]"][0].method_config
    assert (r3["rounds"], r3["steps"], r3["kl_coef"]) == (3, 13, 0.1)  # the rest as configured
    assert rows["dpo"][0].method_config["beta"] == 0.1
    base = {"methods": ["sft", "ppo"]}
    for sweep, says in [({"ppo": [0.0]}, "each a table of its options"),
                        ({"ppo": [{"kl_coef": 0.0}], "ppo.kl_coef": [0.1]}, "both set"),
                        ({"ppo": [{"rounds": 3}, {"rounds": 3}]}, "the same variant twice"),
                        ({"ppo": [{}, {"kl_coef": 0.1}]}, "the same variant twice"),  # default
                        ({"ppo": [{"rounds": 0}]}, "rounds"),
                        ({"sft": [{"epochs": 2}]}, "shared SFT stage")]:
        with pytest.raises(ConfigError, match=says):
            config.parse({**base, "sweep": sweep})


def test_prices_name_budget_units_and_are_finite_and_not_negative():
    m = config.parse({"methods": ["sft", "dpo"], "prices": {"comparisons": 1, "ai_comparisons": 0.1}})
    assert m.prices == {"comparisons": 1.0, "ai_comparisons": 0.1}
    assert config.parse({"methods": ["sft"]}).prices == {}
    for prices, says in [({"comparison": 1.0}, "prices.comparison is no budget unit"),
                         ({"comparisons": -1.0}, "greater than or equal to 0"),
                         ({"comparisons": float("inf")}, "finite")]:
        with pytest.raises(ConfigError, match=says):
            config.parse({"methods": ["sft"], "prices": prices})


def test_a_budget_sweep_multiplies_only_the_cells_that_spend_the_unit():
    """Under a comparisons sweep, base, sft and kto on ratings run once (and appear once);
    under a demonstrations sweep every cell is multiplied: the methods that start from sft,
    orpo, which spends them itself, and base too, whose win-rate is measured against the SFT
    stage at its own budget; a compute cap bounds every stage, so it multiplies base too."""

    def counts(sweep, **extra):
        m = config.parse({"methods": ["base", "sft", "dpo", "kto", "orpo"], "seeds": [0],
                          "budget": {"ratings": 40}, "sweep": sweep, **extra})
        cells = expand(config.plan(m))
        return {n: sorted(str(c.point) for c in cells if c.name == n)
                for n in ("base", "sft", "dpo", "kto", "orpo")}
    ratings = {"method": {"kto": {"source": "ratings"}}}
    got = counts({"budget.comparisons": [100, 200]}, **ratings)
    assert {n: len(v) for n, v in got.items()} == {"base": 1, "sft": 1, "dpo": 2, "kto": 1,
                                                  "orpo": 2}
    got = counts({"budget.ratings": [20, 40]}, **ratings)
    assert {n: len(v) for n, v in got.items()} == {"base": 1, "sft": 1, "dpo": 1, "kto": 2,
                                                  "orpo": 1}
    got = counts({"budget.demonstrations": [16, 32]})
    assert {n: len(v) for n, v in got.items()} == {"base": 2, "sft": 2, "dpo": 2, "kto": 2,
                                                  "orpo": 2}
    got = counts({"budget.flops": [1e12, 2e12]})  # a compute cap bounds every training step
    assert {n: len(v) for n, v in got.items()} == {"base": 2, "sft": 2, "dpo": 2, "kto": 2,
                                                  "orpo": 2}


def test_a_plugin_must_say_where_it_starts(monkeypatch):
    """A method without starts_from, or starting from a method that is not a shared stage,
    is refused with one line naming the fix, before anything runs."""
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("startless", "tests.plugins:Startless"),
        FakeEP("after_ppo", "tests.plugins:StartsFromPPO")]})
    with pytest.raises(config.ConfigError, match="declares no starts_from"):
        config.parse({"methods": ["startless"]})
    with pytest.raises(config.ConfigError, match="'ppo', which is not a shared stage"):
        config.parse({"methods": ["after_ppo"]})


def test_a_stage_is_configured_by_its_own_table_and_recorded():
    """dpo starts from the shared sft stage: [method.sft] is valid without sft in methods, and
    the resolved matrix records the stage's config."""
    m = config.parse({"methods": ["dpo"], "method": {"sft": {"epochs": 1.0}}})
    plan = config.plan(m)
    assert plan.stage_names == {"sft"} and plan.chain("dpo") == ["sft"]
    assert plan.configs["sft"].epochs == 1.0
    assert config.resolved(m)["method"]["sft"]["epochs"] == 1.0
    with pytest.raises(config.ConfigError, match="not in 'methods'"):
        config.parse({"methods": ["base"], "method": {"sft": {"epochs": 1.0}}})


def test_a_shared_stage_must_start_from_base_and_name_what_it_spends(monkeypatch):
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("spendless", "tests.plugins:SpendlessStage"),
        FakeEP("after_spendless", "tests.plugins:AfterSpendless"),
        FakeEP("stage_after_sft", "tests.plugins:StageAfterSFT")]})
    with pytest.raises(config.ConfigError, match="declares no planned_spend"):
        config.parse({"methods": ["after_spendless"]})
    with pytest.raises(config.ConfigError, match="is a shared stage but starts from 'sft'"):
        config.parse({"methods": ["stage_after_sft"]})


def test_rlaif_ppo_follows_rlaif_and_survives_a_round_trip():
    """PPO on AI labels takes rlaif's k, response length and LoRA; its own table holds only
    PPO's settings, so a dumped config edited and loaded again follows rlaif's settings."""
    from methods.rlaif import RLAIFConfig
    cfg = RLAIFConfig.model_validate({"optimizer": "ppo", "lora": True, "max_new_tokens": 40,
                                      "ppo": {"steps": 3}})
    assert (cfg.ppo.lora, cfg.ppo.max_new_tokens, cfg.ppo.steps, cfg.ppo.kl_coef) == \
        (True, 40, 3, 0.05)
    dumped = cfg.model_dump(mode="json")
    assert RLAIFConfig.model_validate(dumped) == cfg
    edited = RLAIFConfig.model_validate({**dumped, "max_new_tokens": 30, "lora": False})
    assert (edited.ppo.max_new_tokens, edited.ppo.lora, edited.ppo.steps) == (30, False, 3)
    for bad, why in (({"ppo_steps": 3}, "now rlaif.ppo.steps"),
                     ({"ppo": {"k": 9}}, "set rlaif.k instead"),
                     ({"ppo": {"rounds": 2}}, "set rlaif.rounds instead")):
        with pytest.raises(config.ConfigError, match=why):
            config.parse({"methods": ["rlaif"], "method": {"rlaif": bad}})


def test_a_nested_option_sweeps_inside_its_table():
    """"rlaif.ppo.steps" varies one key of [method.rlaif.ppo], keeping the rest of the table."""
    m = config.parse({"methods": ["rlaif"], "seeds": [0], "budget": {"rollouts": 100000},
                      "method": {"rlaif": {"optimizer": "ppo", "ppo": {"kl_coef": 0.2}}},
                      "sweep": {"rlaif.ppo.steps": [2, 3]}})
    cells = expand(config.plan(m))
    assert [(c.config.ppo.steps, c.config.ppo.kl_coef) for c in cells] == [(2, 0.2), (3, 0.2)]
