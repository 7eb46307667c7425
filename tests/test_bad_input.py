"""Bad input gets one line on stderr, `alignbench: error: <what>; <fix>`, and exit status 2:
never a traceback, never a silent default."""

import subprocess
import sys

import pytest

from bench import config
from bench.config import ConfigError


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(p, *expect):
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("alignbench: error: ") and "; " in lines[0], lines[0]
    for text in expect:
        assert text in lines[0], lines[0]


def load_error(tmp_path, text: str) -> str:
    f = tmp_path / "m.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(f)
    msg = str(err.value)
    assert "\n" not in msg and "; " in msg, msg
    return msg


# --------------------------------------------------------------------------- the matrix file


@pytest.mark.parametrize("content, expect", [
    (b"\xff\xfe seeds=[0]", ["not UTF-8", "0xff", "save the file as UTF-8"]),
    (b"", ["sets nothing", "'methods'", "preset", "quickstart"]),
    (b"# only a comment\n\n   \n\t\n", ["sets nothing", "'methods'", "preset"]),
])
def test_unreadable_or_empty_matrix_file(tmp_path, content, expect):
    f = tmp_path / "m.toml"
    f.write_bytes(content)
    assert_one_line_error(cli("run", str(f)), str(f), *expect)


def test_directory_as_matrix_file(tmp_path):
    for d in (tmp_path / "matrix.toml", tmp_path / "plain"):
        d.mkdir()
        assert_one_line_error(cli("run", str(d)), str(d), "is a directory", ".toml file")


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize("toml, expect", [
    ("seeds = [true]\n", "'seeds.0': Input should be a valid integer (got True)"),
    ('methods = ["ppo"]\n[method.ppo]\nsteps = "2"\n',
     "'method.ppo.steps': Input should be a valid integer (got the string '2'); write it "
     "without quotes"),
    ('progress = "no"\n', "'progress': Input should be a valid boolean (got the string 'no')"),
    ("[budget]\ncomparisons = true\n", "'budget.comparisons'"),
    ('methods = ["ppo"]\n[method.ppo]\nadaptive_kl = 1\n', "'method.ppo.adaptive_kl'"),
    ('[eval.toxicity]\nk = "2"\n', "'eval.toxicity.k'"),
    ('[eval.toxicity]\nk = 2.0\n', "'eval.toxicity.k'"),
    ('[scenario.options]\nn_entities = "8"\n', "'scenario.options.n_entities'"),
    ('[scenario]\nname = "real"\n[scenario.options]\nweight_mean = [1, "2", 3]\n',
     "'scenario.options.weight_mean.1'"),
    ('[scenario.options]\nn_entities = 1979-05-27\n', "'scenario.options' holds a TOML date"),
    ('[sweep]\n"budget.comparisons" = [10, "20"]\n', "sweep 'budget.comparisons'"),
    ('methods = ["dpo"]\n[sweep]\n"dpo.epochs" = [1, "2"]\n', "'method.dpo.epochs'"),
])
def test_no_coercion(tmp_path, toml, expect):
    assert expect in load_error(tmp_path, toml)


def test_strict_still_takes_an_int_for_a_float_and_an_array_for_a_tuple(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('methods = ["sft", "ppo"]\n[method.sft]\nlr = 1\nepochs = 1\n'
                 '[method.ppo]\nrm_lr = 1\nkl_coef = 0\n'
                 '[scenario]\nname = "real"\n[scenario.options]\nweight_mean = [1, 2, 0]\n')
    m = config.load(f)
    assert config.method_config(m, "sft").lr == 1.0
    assert config.method_config(m, "ppo").rm_lr == 1.0
    assert config.resolved(m)["scenario"]["options"]["weight_mean"] == [1.0, 2.0, 0.0]


def test_method_and_eval_configs_are_strict_in_python_too():
    from pydantic import ValidationError

    from evals.truthfulqa import TruthfulQAOptions
    from methods.ppo import PPOConfig
    with pytest.raises(ValidationError):
        PPOConfig.model_validate({"steps": "2"})
    with pytest.raises(ValidationError):
        TruthfulQAOptions.model_validate({"limit": True})
    assert PPOConfig.model_validate({"lr": 1}).lr == 1.0


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40])
def test_seed_out_of_range(tmp_path, seed):
    msg = load_error(tmp_path, f"seeds = [0, {seed}]\n")
    assert "'seeds.1'" in msg and "[0, 2**32)" in msg and str(seed) in msg


def test_largest_seed_is_accepted(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text(f"seeds = [0, {2**32 - 1}]\n")
    assert config.load(f).seeds == [0, 2**32 - 1]


@pytest.mark.parametrize("method, key, value", [
    ("sft", "epochs", 0), ("sft", "lr", 0), ("sft", "lr", -1e-4), ("sft", "batch_size", 0),
    ("sft", "warmup_ratio", 1.0),
    ("dpo", "epochs", -1), ("dpo", "lr", 0.0), ("dpo", "batch_size", 0),
    ("dpo", "max_new_tokens", 0),
    ("ppo", "steps", 0), ("ppo", "epochs", 0), ("ppo", "lr", 0), ("ppo", "value_lr", -1),
    ("ppo", "rm_lr", 0), ("ppo", "rm_epochs", 0), ("ppo", "batch_size", 0),
    ("ppo", "minibatches", 0), ("ppo", "rm_batch_size", 0),
    ("rlaif", "ppo_steps", 0), ("rlaif", "lr", 0), ("rlaif", "epochs", 0),
])
def test_non_positive_counts_and_rates(tmp_path, method, key, value):
    msg = load_error(tmp_path, f'methods = ["{method}"]\n[method.{method}]\n{key} = {value}\n')
    assert f"'method.{method}.{key}'" in msg and "Input should be" in msg
