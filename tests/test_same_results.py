"""docs/analysis/same_results.py, the instrument behind docs/performance.md's "the
quickstart's numbers unchanged" and "none beyond 1.96 joint standard errors": it must catch one
changed number anywhere a result holds numbers, ignore the machine's wall time, and count z
exactly."""

import copy
import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "analysis" / "same_results.py"
spec = importlib.util.spec_from_file_location("same_results", SCRIPT)
same_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(same_results)

CELL = {"method": "ppo", "seed": 0, "point": {}, "status": "ok", "n": {"win_rate": 24},
        "metrics": {"win_rate.vs_sft": 0.625, "kl.k1": 0.011, "labeler_agreement.loo": 0.63},
        "uncertainty": {"win_rate.vs_sft": 0.1, "kl.k1": 0.02},
        "curves": {"ppo": [{"step": 0.0, "kl": 0.0}]}, "movement": {"relative_change": 0.01},
        "eval_spend": {"rollouts": 96.0},
        "budget": {"caps": {"comparisons": 240.0},
                   "spent": {"comparisons": 240.0, "wall_seconds": 1244.0}},
        "cost": {"wall_seconds": 1244.0, "peak_rss_bytes": 5.6e9, "train_tokens": 69266.0,
                 "train_flops": 9.3e13, "inference_flops": 1.3e13, "eval_flops": 3.2e14,
                 "rollouts": 416.0}}


def run(tmp_path, a_rows, b_rows, *flags):
    for name, rows in (("a", a_rows), ("b", b_rows)):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "results.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
    return same_results.main(str(tmp_path / "a"), str(tmp_path / "b"), *flags)


def test_the_same_numbers_on_another_machine_are_the_same(tmp_path, capsys):
    other = copy.deepcopy(CELL)
    other["cost"].update(wall_seconds=300.0, peak_rss_bytes=1e9)
    other["budget"]["spent"]["wall_seconds"] = 300.0
    assert run(tmp_path, [CELL], [other]) == 0
    assert "0 differ" in capsys.readouterr().out


@pytest.mark.parametrize("path", [("metrics", "kl.k1"), ("uncertainty", "kl.k1"),
                                  ("curves", "ppo"), ("budget", "spent"), ("cost", "rollouts"),
                                  ("n", "win_rate"), ("eval_spend", "rollouts")])
def test_one_changed_number_anywhere_is_caught(tmp_path, capsys, path):
    other = copy.deepcopy(CELL)
    field, key = path
    if field == "curves":
        other["curves"]["ppo"][0]["kl"] = 1e-9
    elif field == "budget":
        other["budget"]["spent"]["comparisons"] = 239.0
    else:
        other[field][key] = other[field][key] + 1e-12
    assert run(tmp_path, [CELL], [other]) == 1
    named = f"cost.{key}: " if field == "cost" else f"{field}: {key}"
    assert f"ppo seed=0 {{}}: {named}" in capsys.readouterr().out


def test_a_missing_cell_is_a_difference(tmp_path):
    sft = {**copy.deepcopy(CELL), "method": "sft"}
    assert run(tmp_path, [CELL, sft], [CELL]) == 1


def test_intervals_count_z_against_the_joint_standard_error(tmp_path, capsys):
    other = copy.deepcopy(CELL)
    # win_rate: |0.625 - 0.9| / hypot(0.1, 0.1) = 1.94, inside; kl.k1: 0.06 / hypot(0.02,
    # 0.02) = 2.12, beyond; loo has no interval and is only counted as changed
    other["metrics"].update({"win_rate.vs_sft": 0.9, "kl.k1": 0.071, "labeler_agreement.loo": 0.7})
    other["uncertainty"]["win_rate.vs_sft"] = 0.1
    same, n, zs = same_results.beyond_noise(CELL, other)
    assert (same, n) == (0, 2)
    assert zs[0][1] == "kl.k1" and zs[0][0] == pytest.approx(0.06 / math.hypot(0.02, 0.02))
    assert zs[1][0] == pytest.approx(0.275 / math.hypot(0.1, 0.1))
    assert run(tmp_path, [CELL], [other], True) == 1
    out = capsys.readouterr().out
    assert "1 of 2 with intervals beyond 1.96 joint SE" in out and "kl.k1" in out


def test_intervals_compare_the_cells_both_runs_have(tmp_path, capsys):
    sft = {**copy.deepcopy(CELL), "method": "sft"}
    assert run(tmp_path, [CELL, sft], [CELL], True) == 0
    out = capsys.readouterr().out
    assert "one run only" in out and "3 of 3 metrics identical" in out
