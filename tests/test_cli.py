"""The command line as a user types it."""

import json
import subprocess
import sys


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_eval_truthfulqa_json_on_a_model_folder(tiny_world):
    p = run("eval", "truthfulqa", "--model", str(tiny_world.base_model), "--limit", "5", "--json",
            "--data", str(__import__("tests.conftest", fromlist=["x"]).TRUTHFULQA_CSV))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["n"] == 5 and 0 <= out["metrics"]["mc1"] <= 1 and 0 < out["metrics"]["mc2"] < 1
    assert out["uncertainty"]["mc1"] >= 0 and out["source"]["n"] == 817


def test_eval_refuses_remote_code_and_pickles(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "x.Y"}}))
    p = run("eval", "truthfulqa", "--model", str(tmp_path), "--json")
    assert p.returncode == 2 and "remote code" in p.stderr and "--trust-remote-code" in p.stderr
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a pickle you want")
    p = run("eval", "truthfulqa", "--model", str(tmp_path), "--json")
    assert p.returncode == 2 and "pickle" in p.stderr and "--allow-pickle" in p.stderr
    assert "Traceback" not in p.stderr


def test_report_command_on_a_missing_folder(tmp_path):
    p = run("report", str(tmp_path / "nope"))
    assert p.returncode == 2 and "no output folder" in p.stderr


def test_unknown_preset_names_the_choices():
    p = run("run", "quikstart")
    assert p.returncode == 2 and "quickstart" in p.stderr and "smoke" in p.stderr
