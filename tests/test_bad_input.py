"""Bad input gets one line on stderr, `alignbench: error: <what>; <fix>`, and exit status 2:
never a traceback, never a silent default."""

import json
import subprocess
import sys

import pytest

from bench import config
from bench.config import ConfigError
from tests.conftest import ROOT, TINY_WORLD
from tests.plugins import FakeEP, patch_entry_points


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
    ("rlaif", "min_margin", 0.5), ("rlaif", "lr", 0), ("rlaif", "epochs", 0),
])
def test_non_positive_counts_and_rates(tmp_path, method, key, value):
    msg = load_error(tmp_path, f'methods = ["{method}"]\n[method.{method}]\n{key} = {value}\n')
    assert f"'method.{method}.{key}'" in msg and "Input should be" in msg


# --------------------------------------------------------------------------- eval --model


def eval_model(model, *extra):
    return cli("eval", "truthfulqa", "--model", str(model), "--json", *extra)


@pytest.mark.parametrize("model", ["./no-such-model", "/no/such/model", "~/no-such-model",
                                   "no-such-model.gguf"])
def test_eval_on_a_missing_path(model):
    assert_one_line_error(eval_model(model), model, "check the path")


def test_eval_on_a_folder_with_a_broken_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama",')
    assert_one_line_error(eval_model(tmp_path), str(tmp_path / "config.json"),
                          "not valid JSON", "download the model again")


def test_eval_on_a_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert_one_line_error(eval_model(tmp_path), str(tmp_path), "has no config.json",
                          "save_pretrained")


def test_eval_on_a_folder_transformers_cannot_load(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert_one_line_error(eval_model(tmp_path), f"cannot load model {tmp_path}",
                          "tokenizer files")


@pytest.mark.parametrize("content, expect", [
    (b"", "is empty (0 bytes)"),
    (b"GGUF\x03\x00\x00\x00", "cannot read GGUF file"),  # the header cut short
    (b"PK\x03\x04 not a gguf at all " * 8, "cannot read GGUF file"),
])
def test_eval_on_a_broken_gguf(tmp_path, content, expect):
    f = tmp_path / "model.gguf"
    f.write_bytes(content)
    assert_one_line_error(eval_model(f), str(f), expect)


def test_eval_on_a_truncated_real_gguf(tmp_path):
    """The real SmolLM2 file cut in half: header intact, tensor data missing."""
    from bench.assets import AssetError, fetch
    try:
        real = fetch("smollm2")
    except AssetError as err:
        pytest.skip(str(err))
    f = tmp_path / "half.gguf"
    with open(real, "rb") as src:
        f.write_bytes(src.read(real.stat().st_size // 2))
    assert_one_line_error(eval_model(f), str(f), "cannot read GGUF file", "download it again")


@pytest.mark.parametrize("args, expect", [
    (["--limit", "0"], "--limit 0: Input should be greater than or equal to 1"),
    (["--limit", "-1"], "--limit -1"),
    (["--seed", "-1"], "--seed -1 is outside [0, 2**32)"),
    (["--seed", str(2**32)], f"--seed {2**32} is outside"),
])
def test_eval_bad_options_are_refused_before_the_model_loads(args, expect):
    # the model does not exist: the option is checked first
    assert_one_line_error(eval_model("./no-such-model", *args), expect)


def test_eval_empty_data_and_unknown_scenario_are_refused_before_the_model_loads():
    assert_one_line_error(eval_model("./no-such-model", "--data", ""), "--data is empty")
    p = cli("eval", "toxicity", "--model", "./no-such-model", "--scenario", "mikro")
    assert p.returncode == 2 and "unknown scenario 'mikro'" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


# --------------------------------------------------------------------------- output folders


def test_run_into_a_file_is_refused(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('methods = ["base"]\nevals = ["truthfulqa"]\nseeds = [0]\n')
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    assert_one_line_error(cli("run", str(f), "--out", str(taken)), str(taken), "is a file")
    assert taken.read_text() == "mine"


def test_report_refuses_a_folder_alignbench_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert_one_line_error(cli("report", str(tmp_path)), "not an alignbench output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------- output


LONG_LIST = """
import sys
import bench.registry as reg
from tests.plugins import FakeEP

class Wordy:
    name = "wordy"
    description = "x" * 300_000  # more than a pipe holds, so the writer is still writing

reg.entry_points = lambda group: ([FakeEP("wordy", "__main__:Wordy")]
                                  if group == "alignbench.methods" else [])
from bench.cli import main
sys.exit(main(["list"]))
"""


def test_list_into_a_closed_pipe_is_quiet():
    """`alignbench list | head -1`: the reader leaves after one line."""
    proc = subprocess.Popen([sys.executable, "-c", LONG_LIST], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout.readline() == b"methods:\n"
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr == "" and proc.returncode == 1


def test_run_exit_status_counts_failed_cells(monkeypatch, tmp_path, capsys):
    import tomli_w

    from bench.cli import main
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("exploding", "tests.plugins:Exploding")]})
    matrix = {"name": "exit-status", "methods": ["sft", "exploding"], "evals": ["truthfulqa"],
              "seeds": [0], "progress": False, "scenario": {"name": "micro", "options": TINY_WORLD},
              "budget": {"demonstrations": 16, "comparisons": 20, "ai_comparisons": 20,
                         "rollouts": 200},
              "method": {"sft": {"epochs": 1}}}
    failing = tmp_path / "failing.toml"
    failing.write_text(tomli_w.dumps(matrix))
    out = tmp_path / "out-failing"
    assert main(["run", str(failing), "--out", str(out), "--no-progress"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"alignbench: 1 of 2 cells failed; see {out / 'report.html'}#failed"

    passing = tmp_path / "passing.toml"
    passing.write_text(tomli_w.dumps({**matrix, "methods": ["sft"]}))
    assert main(["run", str(passing), "--out", str(tmp_path / "out-ok"), "--no-progress"]) == 0
    assert "failed" not in capsys.readouterr().err
