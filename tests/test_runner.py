"""The runner's promises: resume after SIGKILL, complete keys, truncated results, failures that
stay local, and determinism."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cells, config, output, store
from bench.stage_cache import FrozenReference
from bench.cli import run_matrix
from bench.budget import HARD_UNITS
from tests.conftest import TINY_WORLD
from tests.plugins import FakeEP, patch_entry_points

MATRIX = {
    "name": "runner-test", "methods": ["base", "sft", "dpo"], "evals": ["truthfulqa", "toxicity"],
    "seeds": [0, 1], "progress": False,
    "scenario": {"name": "micro", "options": TINY_WORLD},
    "budget": {"demonstrations": 16, "comparisons": 20, "ai_comparisons": 20, "rollouts": 200},
    "method": {"sft": {"epochs": 1}, "dpo": {"epochs": 1}},
    "eval": {"toxicity": {"k": 2}},
}


def toml_text(d):
    import tomli_w
    return tomli_w.dumps(d)


def events(out: Path) -> list[dict]:
    f = out / "events.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def metrics_by_cell(out: Path) -> dict:
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {(r["method"], r["seed"]): (r["status"], r["metrics"]) for r in recs}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    run_matrix(config.parse(MATRIX), out)
    return out


def test_run_writes_the_output_contract(reference_run):
    out = reference_run
    for f in ("matrix.toml", "results.jsonl", "summary.csv", "report.html", "report.md"):
        assert (out / f).is_file(), f
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs)
    r = next(r for r in recs if r["method"] == "dpo")
    assert "truthfulqa.mc1" in r["metrics"] and "truthfulqa.mc1" in r["uncertainty"]
    assert "truthfulqa.mc1.Adversarial" in r["metrics"]
    assert r["budget"]["given"]["comparisons"] == 20
    assert r["budget"]["spent"]["comparisons"] == 20  # 2 prompts x K(K-1)/2 = 10
    assert r["budget"]["spent"]["demonstrations"] == 16  # the shared SFT stage is charged
    for k in ("git_commit", "code_version", "packages", "started", "ended", "world", "seeds"):
        assert k in r["provenance"]
    assert (out / "cells" / r["key"] / "result.json").is_file()


def test_same_seed_twice_identical(reference_run, tmp_path):
    run_matrix(config.parse(MATRIX), tmp_path)
    assert metrics_by_cell(tmp_path) == metrics_by_cell(reference_run)


def test_sigkill_mid_cell_then_resume(reference_run, tmp_path):
    mfile = tmp_path / "m.toml"
    mfile.write_text(toml_text(MATRIX))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(mfile), "--out",
                             str(out), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 300
    killed_in = None
    while time.time() < deadline and proc.poll() is None:
        ev = events(out)
        ends = {e["key"] for e in ev if e["event"] == "cell_end"}
        started = [e for e in ev if e["event"] == "cell_start"]
        # a dpo cell takes seconds (sampling, labeling, training): kill as soon as one starts
        if len(ends) >= 2 and started and started[-1]["key"] not in ends \
                and started[-1]["cell"].startswith("dpo"):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_in = started[-1]["key"]
            break
        time.sleep(0.05)
    assert killed_in is not None, "the run ended before it could be killed mid-cell"
    finished_before = {e["key"] for e in events(out) if e["event"] == "cell_end"}
    assert killed_in not in finished_before
    before = len(events(out))
    run_matrix(config.parse(MATRIX), out)
    resumed = [e["key"] for e in events(out)[before:] if e["event"] == "cell_start"]
    assert killed_in in resumed, "the killed cell was not recomputed"
    assert not finished_before & set(resumed), "a finished cell was recomputed"
    assert len(resumed) == 6 - len(finished_before)
    assert metrics_by_cell(out) == metrics_by_cell(reference_run)


def test_truncated_result_recomputes_only_that_cell(tmp_path, reference_run):
    import shutil
    shutil.copytree(reference_run, tmp_path / "o")
    out = tmp_path / "o"
    (out / "events.jsonl").unlink()
    victim = next((out / "cells").iterdir()) / "result.json"
    victim.write_text(victim.read_text()[:100])
    run_matrix(config.parse(MATRIX), out)
    starts = [e["key"] for e in events(out) if e["event"] == "cell_start"]
    assert starts == [victim.parent.name]
    assert metrics_by_cell(out) == metrics_by_cell(reference_run)


def test_failing_cells_stay_local(monkeypatch, tmp_path):
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("exploding", "tests.plugins:Exploding"), FakeEP("echo", "tests.plugins:Echo"),
        FakeEP("raising", "tests.plugins:Raising")]})
    m = config.parse({**MATRIX, "methods": ["sft", "exploding", "raising", "echo"], "seeds": [0],
                      "method": {"sft": {"epochs": 1}}})
    run_matrix(m, tmp_path)
    got = metrics_by_cell(tmp_path)
    assert got[("sft", 0)][0] == "ok" and got[("echo", 0)][0] == "ok"
    assert got[("exploding", 0)][0] == "failed" and got[("raising", 0)][0] == "failed"
    rec = next(json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()
               if '"exploding"' in x)
    assert rec["failed_step"] == 3 and "non-finite loss" in rec["error"]
    rec = next(json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()
               if '"raising"' in x)
    assert "KeyError" in rec["error"] and "oops" in rec["traceback"]
    html = (tmp_path / "report.html").read_text()
    assert "FAILED" in html and "non-finite loss at step 3" in html
    # the plugin method registered through an entry point ran in the matrix
    assert got[("echo", 0)][1]["truthfulqa.mc1"] == got[("sft", 0)][1]["truthfulqa.mc1"]


def test_trainer_log_lines_go_to_the_cells_log_not_the_terminal(tmp_path, capfd):
    """With progress off, transformers prints a dict per logging step (its PrinterCallback),
    and a load report for every reward model's new head; those lines belong in the cell's
    log.txt, and the terminal keeps only what a user reads."""
    run_matrix(config.parse({**MATRIX, "methods": ["sft", "dpo", "best_of_n"], "seeds": [0],
                             "method": {**MATRIX["method"], "best_of_n": {"n": 2}}}), tmp_path)
    seen = capfd.readouterr()
    assert "train_loss" not in seen.out + seen.err
    assert "LOAD REPORT" not in seen.out + seen.err
    recs = {r["method"]: r for r in map(json.loads,
                                        (tmp_path / "results.jsonl").read_text().splitlines())}
    log = (tmp_path / "cells" / recs["dpo"]["key"] / "log.txt").read_text()
    assert "alignbench.trainer INFO: step" in log and "train_loss" in log
    assert "LOAD REPORT" in (tmp_path / "cells" / recs["best_of_n"]["key"] / "log.txt").read_text()


def test_a_librarys_python_warnings_go_to_the_cells_log(tmp_path, capfd):
    """A warnings.warn inside a cell (TRL reading a deprecated transformers attribute on every
    generation) is written to the cell's log.txt, not the terminal; outside a cell the usual
    warning display is back."""
    import warnings

    from bench.logs import cell_log
    before = warnings.showwarning
    with cell_log(tmp_path / "log.txt"):
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
    assert warnings.showwarning is before
    assert "FutureWarning: `is_gradient_checkpointing` is deprecated" in \
        (tmp_path / "log.txt").read_text()
    assert "is_gradient_checkpointing" not in "".join(capfd.readouterr())


def test_a_policy_that_did_not_move_from_its_start_is_flagged(monkeypatch, tmp_path):
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("frozen", "tests.plugins:Frozen")]})
    run_matrix(config.parse({**MATRIX, "methods": ["sft", "frozen", "dpo"], "seeds": [0]}),
               tmp_path)
    recs = {r["method"]: r for r in map(json.loads,
                                        (tmp_path / "results.jsonl").read_text().splitlines())}
    frozen, dpo = recs["frozen"], recs["dpo"]
    assert frozen["status"] == "ok"
    assert frozen["movement"] == {"from": "sft", "relative_change": 0.0, "moved": False}
    assert frozen["warnings"] == ["the trained policy did not move from its start (sft: "
                                  "relative weight change 0.0e+00); its numbers are the start's"]
    assert dpo["movement"]["moved"] and dpo["movement"]["relative_change"] > 1e-4
    assert dpo["warnings"] == [] and recs["sft"]["warnings"] == []
    assert recs["sft"]["movement"]["from"] == "base" and recs["sft"]["movement"]["moved"]
    html = (tmp_path / "report.html").read_text()
    assert 'id="warnings"' in html and "1 with a warning" in html
    assert "did not move from its start" in html
    assert "## Warnings" in (tmp_path / "report.md").read_text()


def test_a_method_written_to_the_old_contract_fails_in_training_naming_the_fix(
        monkeypatch, tmp_path):
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("returns_policy", "tests.plugins:ReturnsPolicy")]})
    run_matrix(config.parse({**MATRIX, "methods": ["returns_policy"], "seeds": [0],
                             "method": {}}), tmp_path)
    (rec,) = map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())
    assert rec["status"] == "failed"
    assert rec["error"].startswith("training: TypeError: method 'returns_policy' returned "
                                   "HFPolicy, not bench.api.Trained"), rec["error"]


def test_budget_exceeded_fails_the_cell_and_spends_nothing_more(monkeypatch, tmp_path):
    """The ledger refuses at run time whatever the preflight did not foresee (a plugin that
    declares no plan): the cell fails with the unit named, the rest of the matrix runs."""
    patch_entry_points(monkeypatch, {"alignbench.methods": [
        FakeEP("overspending", "tests.plugins:Overspending")]})
    m = config.parse({**MATRIX, "methods": ["overspending", "sft"], "seeds": [0],
                      "method": {"sft": {"epochs": 1}}, "budget": {**MATRIX["budget"],
                                                                  "rollouts": 5}})
    run_matrix(m, tmp_path)
    recs = {r["method"]: r for r in map(json.loads,
                                        (tmp_path / "results.jsonl").read_text().splitlines())}
    rec = recs["overspending"]
    assert rec["status"] == "failed" and "budget exceeded: rollouts asked for 3" in rec["error"]
    assert rec["budget"]["spent"]["rollouts"] == 3  # the refused charge spent nothing
    assert recs["sft"]["status"] == "ok"


def test_a_matrix_that_cannot_fit_its_budget_is_refused_before_anything_runs(tmp_path):
    """DPO at 20 comparisons and K=5 samples 2 prompts x 5 = 10 rollouts: a 5-rollout budget is
    refused at once, one line for both seeds, naming the amount and the fix, and --fresh has
    deleted nothing."""
    m = config.parse({**MATRIX, "budget": {**MATRIX["budget"], "rollouts": 5}})
    (tmp_path / "cells" / "earlier").mkdir(parents=True)
    with pytest.raises(config.ConfigError) as err:
        run_matrix(m, tmp_path, fresh=True)
    msg = str(err.value)
    assert msg.count("dpo needs 10 rollouts (10 sampled to rank 20 comparisons at k=5) but "
                     "budget.rollouts is 5; raise budget.rollouts to at least 10") == 1
    assert "sft" not in msg.replace("dpo", "")  # sft fits: only dpo is named
    assert (tmp_path / "cells" / "earlier").is_dir() and not (tmp_path / "results.jsonl").exists()
    # a budget sweep names the point that does not fit, and only that one
    swept = config.parse({**MATRIX, "methods": ["ppo"], "method": {"ppo": {"steps": 3,
                          "batch_size": 4}}, "sweep": {"budget.rollouts": [22, 21]}})
    with pytest.raises(config.ConfigError, match=r"ppo budget.rollouts=21 needs 22 rollouts "
                       r"\(10 sampled to rank 20 comparisons at k=5, 12 for 1 round\(s\) x 3 "
                       r"steps x batch_size 4\)") as err:
        run_matrix(swept, tmp_path)
    assert "rollouts=22" not in str(err.value)
    uncapped = config.parse({**MATRIX, "budget": {**MATRIX["budget"], "comparisons": None}})
    with pytest.raises(config.ConfigError, match="dpo: spends the whole comparisons budget, which "
                       "is uncapped; set budget.comparisons"):
        run_matrix(uncapped, tmp_path)


def test_every_method_spends_what_it_plans(tmp_path):
    """The preflight's arithmetic against the ledger: every registered method that declares a
    plan spends exactly that, over rounds, both RLAIF optimizers, both KTO label sources and
    DPO's robust loss, and moves its parameters (the SFT row and ORPO from the base model; base
    is the base model itself, large_base the wider one, and best-of-n trains no policy). K=4
    (6 pairs a prompt) makes the rounds matter: 20 comparisons in one round rank 3 prompts (12
    rollouts), in two rounds of 10 one prompt each (8). Every cell records what serving one
    answer samples."""
    from bench import registry
    every = registry.names("methods")
    m = config.parse({
        **MATRIX, "methods": every,
        # the world pretrains the large_base model too, which that row serves
        "scenario": {"name": "micro", "options": {**TINY_WORLD, "reference_scale": 2}},
        "seeds": [0], "evals": ["truthfulqa"], "eval": {},
        "budget": {**MATRIX["budget"], "rollouts": 200, "ratings": 12},
        "method": {"sft": {"epochs": 1},
                   "dpo": {"epochs": 1, "rounds": 2, "k": 4, "label_smoothing": 0.1},
                   "ppo": {"steps": 2, "batch_size": 4, "epochs": 1, "rm_epochs": 1, "k": 4},
                   "rlaif": {"epochs": 1, "min_margin": 0.0, "ppo": {"steps": 1}},
                   "rloo": {"steps": 3, "batch_size": 8, "k": 4, "rm_epochs": 1},
                   "grpo": {"steps": 2, "batch_size": 8, "k": 4, "rm_epochs": 1},
                   "kto": {"epochs": 1, "k": 4, "batch_size": 4},
                   "simpo": {"epochs": 1, "k": 4, "batch_size": 4},
                   "orpo": {"epochs": 1, "k": 4, "batch_size": 4},
                   "best_of_n": {"n": 3, "k": 4, "rm_epochs": 1},
                   "rsft": {"n": 2, "prompts": 4, "k": 4, "rm_epochs": 1, "epochs": 1}},
        "sweep": {"ppo.rounds": [1, 2], "rlaif.optimizer": ["dpo", "ppo"],
                  "kto.source": ["comparisons", "ratings"], "dpo.loss_type": ["sigmoid", "robust"]},
        "prices": {"comparisons": 1.0, "ai_comparisons": 0.1, "ratings": 0.25}})
    run_matrix(m, tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    for r in recs:  # the dollars each cell's training spent, at the matrix's prices
        s = r["budget"]["spent"]
        assert r["prices"] == {"comparisons": 1.0, "ai_comparisons": 0.1, "ratings": 0.25}
        assert r["cost"]["dollars"] == pytest.approx(
            s["comparisons"] + 0.1 * s["ai_comparisons"] + 0.25 * s["ratings"]), r["method"]
    assert {r["cost"]["dollars"] for r in recs if r["method"] == "rlaif"} == {2.0}
    assert {r["cost"]["dollars"] for r in recs if r["method"] in ("base", "sft")} == {0.0}
    assert {r["method"] for r in recs} == set(every)
    assert len(recs) == len(every) + 4 and all(r["status"] == "ok" for r in recs), \
        [r["error"] for r in recs if r["status"] != "ok"]
    for r in recs:  # every method that trains a policy moved its parameters
        assert (r["movement"] is None) == (r["method"] in ("base", "large_base", "best_of_n")), \
            r["method"]
        assert r["movement"] is None or r["movement"]["moved"], (r["method"], r["movement"])
        assert r["movement"] is None or r["movement"]["from"] == (
            "base" if r["method"] in ("sft", "orpo") else "sft")
        serve = 3 if r["method"] == "best_of_n" else 1
        assert r["budget"]["spent"]["samples_per_response"] == serve, r["method"]
    plan = config.plan(m)
    for r in recs:  # what a cell spends is what its config (and its start's) says it may
        cfg = registry.resolve("methods", r["method"]).Config.model_validate(r["method_config"])
        may = set(cfg.spends()).union(*(plan.configs[s].spends() for s in plan.chain(r["method"])))
        used = {u for u in HARD_UNITS if r["budget"]["spent"][u]} - {"samples_per_response"}
        assert used <= may, (r["method"], r["point"], used - may)
    planned = 0
    for r in recs:
        cfg = registry.resolve("methods", r["method"]).Config.model_validate(r["method_config"])
        plan = cfg.planned_spend(r["budget"]["given"])
        assert plan or r["method"] in ("base", "large_base")
        for unit, (need, _) in plan.items():
            assert r["budget"]["spent"][unit] == need, (r["method"], r["point"], unit)
            planned += 1
    assert planned == 18
    spent = {(r["method"], tuple(sorted(r["point"].items()))): r["budget"]["spent"]
             for r in recs}
    rollouts = {k: v["rollouts"] for k, v in spent.items()}
    assert rollouts[("dpo", (("dpo.loss_type", "sigmoid"),))] == 8
    assert rollouts[("ppo", (("ppo.rounds", 1),))] == 12 + 2 * 4
    assert rollouts[("ppo", (("ppo.rounds", 2),))] == 8 + 2 * 2 * 4
    assert rollouts[("rlaif", (("rlaif.optimizer", "ppo"),))] == 10 + 64  # one step of 64
    assert rollouts[("rloo", ())] == 12 + 3 * 8 and rollouts[("grpo", ())] == 12 + 2 * 8
    assert rollouts[("kto", (("kto.source", "comparisons"),))] == rollouts[("simpo", ())] == 12
    assert rollouts[("orpo", ())] == 12 + 16  # its rankings, and one rejected per demonstration
    assert rollouts[("best_of_n", ())] == 12 and rollouts[("rsft", ())] == 12 + 4 * 2
    # each RLHF round's reward model against gold, on the start's and the policy's samples
    curves = {(r["method"], tuple(sorted(r["point"].items()))): r["curves"] for r in recs}
    for k, name, n in [(("ppo", (("ppo.rounds", 2),)), "ppo_rm_monitor", 2),
                       (("rlaif", (("rlaif.optimizer", "ppo"),)), "rlaif_ppo_rm_monitor", 1)]:
        points = curves[k][name]
        assert [p["step"] for p in points] == list(range(n)), points
        for p in points:
            assert p["pairs.start"] > 0 and p["pairs.policy"] > 0, p
            assert 0 <= p["rm_vs_gold.start"] <= 1 and 0 <= p["rm_vs_gold.policy"] <= 1, p
    ratings = spent[("kto", (("kto.source", "ratings"),))]
    assert ratings["ratings"] == 12 and ratings["comparisons"] == 0 and ratings["rollouts"] == 12
    assert spent[("orpo", ())]["demonstrations"] == 16
    assert spent[("orpo", ())]["flops"] > 0 and spent[("orpo", ())]["inference_flops"] > 0


def test_a_held_out_prompt_family_is_reported_apart(tmp_path, monkeypatch):
    """PPO with holdout_prompts: labeler_agreement splits its reward model's agreement with
    gold on SFT samples into the held-out family and the rest, whose pooled value is the
    sft_samples one (a weighted mean of the two, so between them); the row without a holdout
    has neither slice; and the two PPO rows drew different comparison sets (the holdout is in
    the shared set's key), each charged its full budget."""
    m = config.parse({
        **MATRIX, "methods": ["sft", "ppo"], "seeds": [0], "evals": ["labeler_agreement"],
        "eval": {},
        "method": {"sft": {"epochs": 1},
                   "ppo": {"steps": 1, "batch_size": 4, "epochs": 1, "rm_epochs": 1, "k": 4}},
        "sweep": {"ppo": [{"rm_monitor_prompts": 0},
                          {"holdout_prompts": "the (color|sound) of"}]}})
    import re

    from methods import feedback
    asked, ranked = [], feedback.ranked_pairs

    def spy(policy, prompts, *a, **kw):  # the prompts each comparison set is drawn from
        asked.append(list(prompts))
        return ranked(policy, prompts, *a, **kw)
    monkeypatch.setattr(feedback, "ranked_pairs", spy)
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    run_matrix(m, tmp_path / "out")
    tmp_path = tmp_path / "out"
    recs = {"holdout_prompts" in json.dumps(r["point"]): r for r in
            (json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines())
            if r["method"] == "ppo"}
    plain, held = recs[False]["metrics"], recs[True]
    assert "ppo_rm_monitor" not in recs[False]["curves"]  # rm_monitor_prompts = 0: no check
    assert len(held["curves"]["ppo_rm_monitor"]) == 1
    assert held["status"] == "ok", held["error"]
    h = held["metrics"]
    lo, hi = sorted((h["labeler_agreement.rm_vs_gold.held_out"],
                     h["labeler_agreement.rm_vs_gold.seen_families"]))
    assert lo - 1e-12 <= h["labeler_agreement.rm_vs_gold.sft_samples"] <= hi + 1e-12
    assert not any(k.endswith((".held_out", ".seen_families")) for k in plain)
    assert recs[False]["budget"]["spent"]["comparisons"] == \
        held["budget"]["spent"]["comparisons"] == 18  # 3 whole prompts of 6 pairs (k=4)
    family = re.compile("the (color|sound) of")
    assert len(asked) == 2  # a fresh cache: each PPO row's comparison set computed once
    assert sorted(any(family.search(p) for p in prompts) for prompts in asked) == [False, True]


def test_cell_keys_complete_and_cosmetic_changes_ignored(tiny_world, monkeypatch):
    base = config.parse(MATRIX)

    def keys(m):
        plan = config.plan(m)
        return [cells.cell_key(c, tiny_world, plan, "cpu", cells.thread_counts(plan)) for c in cells.expand(plan)]

    k0 = keys(base)
    shuffled = dict(reversed(list(MATRIX.items())))
    cosmetic = config.parse({**shuffled, "out": "/elsewhere", "name": "other", "progress": True})
    assert keys(cosmetic) == k0
    # prices move no number a cell computes: the report prices the cells (reports/build.py)
    assert keys(config.parse({**MATRIX, "prices": {"comparisons": 1.0}})) == k0
    changes = [
        {"method": {"sft": {"epochs": 2}, "dpo": {"epochs": 1}}},
        {"method": {"sft": {"epochs": 1}, "dpo": {"epochs": 1, "beta": 0.2}}},
        {"budget": {**MATRIX["budget"], "comparisons": 30}},
        {"eval": {"toxicity": {"k": 3}}},
        {"evals": ["truthfulqa"], "eval": {}},
    ]
    for ch in changes:
        k = keys(config.parse({**MATRIX, **ch}))
        assert set(k).isdisjoint(k0) or "dpo" in str(ch), ch  # a dpo option moves only dpo
        assert k != k0, ch
    # every cell is compared with the stages (win_rate vs sft, kl): base's key moves with sft's
    with_base = {**MATRIX, "methods": ["base", "dpo"]}
    b0 = keys(config.parse(with_base))[0]
    assert keys(config.parse({**with_base, "method": {"sft": {"epochs": 2}}}))[0] != b0
    # seed, world and code identity are in the key
    assert len(set(k0)) == len(k0)
    monkeypatch.setattr(store, "code_version", lambda: "different-code")
    assert set(keys(base)).isdisjoint(k0)


def test_world_options_change_the_key(tiny_world, cache_dir, monkeypatch):
    import torch

    from scenarios.micro import MicroOptions, world_key
    assert world_key(MicroOptions(**TINY_WORLD)) == tiny_world.key
    assert world_key(MicroOptions(**{**TINY_WORLD, "tau": 2.0})) != tiny_world.key
    # pretraining on another thread count gives other weights: another world
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert world_key(MicroOptions(**TINY_WORLD)) != tiny_world.key


def test_two_runners_on_one_folder(tmp_path):
    out = output.claim(tmp_path / "out")
    with output.locked(out):  # another run holds the folder (flock: per open file)
        with pytest.raises(output.OutputLocked, match="another alignbench run"):
            run_matrix(config.parse(MATRIX), out)
    assert not (out / "cells").exists()  # it wrote nothing


def test_reference_samples_are_drawn_once_and_change_no_score(tmp_path, tiny_policy):
    """The frozen references' win-rate samples are reused across cells: the wrapper returns what
    the policy itself samples, samples once per argument set, and a cell's win-rate is the same
    whether the reference samples were drawn in its own cell or reused from an earlier one."""
    calls = []
    ref = FrozenReference(tiny_policy)
    real = tiny_policy.generate

    def counting(*a, **kw):
        calls.append(kw["seed"])
        return real(*a, **kw)

    ref.policy = type("P", (), {"generate": staticmethod(counting)})()
    prompts = ["q a", "q b", "q c"]
    first = ref.generate(prompts, max_new_tokens=6, temperature=0.7, seed=3)
    assert first == real(prompts, max_new_tokens=6, temperature=0.7, seed=3)
    first.append("caller's mutation")
    assert ref.generate(prompts, max_new_tokens=6, temperature=0.7, seed=3) == first[:-1]
    ref.generate(prompts, max_new_tokens=6, temperature=0.7, seed=4)
    assert calls == [3, 4]

    m = {**MATRIX, "methods": ["sft", "dpo"], "evals": ["win_rate"], "seeds": [0],
         "eval": {"win_rate": {"samples_per_prompt": 2}}}
    run_matrix(config.parse(m), tmp_path / "both")  # dpo reuses the sft cell's reference samples
    run_matrix(config.parse({**m, "methods": ["dpo"]}), tmp_path / "alone")
    both, alone = metrics_by_cell(tmp_path / "both"), metrics_by_cell(tmp_path / "alone")
    assert both[("dpo", 0)] == alone[("dpo", 0)]
    assert both[("dpo", 0)][0] == "ok" and "win_rate.vs_sft" in both[("dpo", 0)][1]
