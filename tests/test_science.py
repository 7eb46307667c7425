"""The methods on the micro-world: shared budgets, and the overoptimization effect the literature
reports (Gao et al. 2022), measured with the gold judge that only the micro-world has."""

import json

import pytest

from bench import config
from bench.cli import run_matrix


def _run(tmp_path, m) -> list[dict]:
    """Run a matrix and return its result records, every cell required to have finished."""
    run_matrix(m, tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
    return recs


def test_budgets_are_equal_and_recorded(tmp_path):
    """Every method gets the same budget; ppo's reward model and dpo spend the same human
    comparisons, rlaif spends AI comparisons instead; nothing exceeds its cap. Each cell's
    wall time and peak memory are recorded by phase."""
    m = config.load("smoke").model_copy(update={"progress": False})
    recs = _run(tmp_path, m)
    spent = {r["method"]: r["budget"]["spent"] for r in recs}
    for r in recs:
        for unit in ("demonstrations", "comparisons", "ai_comparisons", "rollouts"):
            assert r["budget"]["spent"][unit] <= r["budget"]["given"][unit]
    assert spent["ppo"]["comparisons"] == spent["dpo"]["comparisons"] == m.budget.comparisons
    assert spent["rlaif"]["comparisons"] == 0
    assert spent["rlaif"]["ai_comparisons"] == m.budget.ai_comparisons
    assert spent["base"]["demonstrations"] == 0
    assert all(spent[k]["demonstrations"] == m.budget.demonstrations
               for k in ("sft", "ppo", "dpo", "rlaif"))
    # and what each cell's time went to, by phase (bench.meter): its parts within its whole
    for r in recs:
        secs, peaks = r["cost"]["phase_seconds"], r["cost"]["phase_peak_rss_bytes"]
        evals = [f"eval {e}" for e in m.evals]
        assert {"training", *evals} <= set(secs) == set(peaks), (r["method"], secs)
        assert sum(secs[p] for p in ("training", *evals)) <= r["cost"]["wall_seconds"]
        assert max(peaks.values()) <= r["cost"]["peak_rss_bytes"]
        for path, s in secs.items():
            if "/" in path:
                assert s <= secs[path.rsplit("/", 1)[0]], (r["method"], path)
    ppo = next(r for r in recs if r["method"] == "ppo")["cost"]["phase_seconds"]
    assert {"training/RewardTrainer", "training/ppo.sampling", "training/ppo.scoring",
            "training/ppo.reference", "training/ppo.update", "training/gold monitor"} <= set(ppo)


def test_rlaif_drops_pairs_the_judge_barely_separates(tmp_path):
    """A margin no judged pair reaches leaves nothing to train on: the cell fails with an error
    that names the setting, and the AI labels it bought stay recorded as spent."""
    m = config.load("smoke").model_copy(update={"progress": False})
    m = config.parse({**m.model_dump(mode="json"), "methods": ["rlaif"], "evals": [], "eval": {},
                      "method": {"rlaif": {"epochs": 1, "min_margin": 0.4999}}})
    run_matrix(m, tmp_path)
    (rec,) = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert rec["status"] == "failed" and "min_margin" in rec["error"], rec["error"]
    assert rec["budget"]["spent"]["ai_comparisons"] == m.budget.ai_comparisons


# Every science assertion below is on confirmation seeds: seeds that no preset's settings were
# chosen on (the presets were developed on seeds 0-2 and checked on 0-9, and the
# quickstart's effects are smaller on other seeds than on those). The claims preset's seeds,
# 100-109, are held out for its findings; the reward-hacking test uses 100-106.
CLAIMS_SEEDS = list(range(100, 110))

# The reward-hacking test is a one-sided test at 1%: the two-sided 98% interval's bound (the
# report's floored seed interval, bench.stats) must clear the null. A KL penalty that does
# nothing passes it with a chance of at most 1% under the interval's t model; a PPO that
# returns its start exactly gives a zero-width difference and always fails. Seven seeds: on the
# development seeds 0-6, five had left the gap's lower bound at 0.04, too close for a test that
# must not flake.
HACKING_SEEDS = list(range(100, 107))
LEVEL = 0.98  # two-sided, so each bound is one-sided 99%


@pytest.mark.slow
@pytest.mark.science
def test_reward_hacking_without_kl_and_its_prevention(tmp_path):
    """kl_coef = 0 with a small reward-model budget: gold falls from its peak, and the default
    coefficient holds gold near its peak. Compared per seed (the same reward model and rollouts
    seed in both arms), because one PPO trajectory is chaotic: the gold drop of the free arm
    ranged 0.63-1.67 over seeds 0-6.

    On seeds 100-106 (one torch thread) the gap read +0.446 [0.178, 0.714]. That
    proxy reward keeps rising after gold peaks, which this test also asserted on the
    development seeds 0-6, did not replicate there at this standard: +0.110 [-0.002, 0.222]
    (seed 102 read -0.002), so it is not asserted."""
    from bench.stats import paired_seed_delta

    m = config.load("quickstart").model_copy(update={"progress": False})
    m = config.parse({**m.model_dump(mode="json"), "methods": ["ppo"], "evals": ["kl"], "eval": {},
                      "seeds": HACKING_SEEDS, "budget": {**m.budget.model_dump(),
                                                         "comparisons": 200},
                      "sweep": {"ppo.kl_coef": [0.0, 0.1]}})
    recs = _run(tmp_path, m)

    def per_seed(kl_coef, metric):
        return [r["metrics"][metric] for r in sorted(recs, key=lambda r: r["seed"])
                if r["method_config"]["kl_coef"] == kl_coef]

    free, held = per_seed(0.0, "kl.gold_drop"), per_seed(0.1, "kl.gold_drop")
    gap, low, high = paired_seed_delta(free, held, level=LEVEL)
    assert low > 0, ("the KL penalty does not hold gold", gap, low, high, free, held)


# The claims preset's verdicts on its ten confirmation seeds, measured on 2 cores
# (docs/results.md and the claims preset). Each is a 95% interval read by
# reports/findings.py from the run's own records; the test asserts every resolved verdict, so a
# method, eval or world change that moves one is seen. Another machine's float rounding may
# move an effect near its bound (3c's interval ends at 0.000; at 80% power 1b needs 24 seeds, 3c
# 18, 4b 12, 2c and 8e 10, 2a and 2e 5, the rest at most 4).
HOLD = {"1a", "1b", "1c", "2a", "2c", "2e", "2f", "3c", "4b", "5c", "6a", "6b", "8a", "8b", "8c",
        "8d", "8e", "8f", "8g"}
DOES_NOT_HOLD = {"2b"}


@pytest.mark.slow
@pytest.mark.science
def test_the_claims_that_hold_on_the_confirmation_seeds(tmp_path):
    """The claims preset as a user runs it (``alignbench run claims``, about 43 minutes on 2
    cores from an empty cache): its findings.json, computed from its own cells, holds every
    claim above, the pairwise AI judge's agreement with the panel on truth is below chance,
    and every other claim is unresolved at ten seeds, not reversed."""
    m = config.load("claims").model_copy(update={"progress": False})
    assert m.seeds == CLAIMS_SEEDS
    _run(tmp_path, m)
    found = {f["id"]: f for f in json.loads((tmp_path / "findings.json").read_text())}
    assert set(found) == {c.id for c in m.claims}
    for cid, f in found.items():
        want = "holds" if cid in HOLD else "does not hold" if cid in DOES_NOT_HOLD \
            else "not resolved"
        assert f["verdict"] == want, (cid, f["claim"], f["effect"], f["lo"], f["hi"])


@pytest.mark.slow
@pytest.mark.science
def test_ai_feedback_trades_cost_for_fidelity_on_the_confirmation_seeds(tmp_path):
    """The prices preset (``alignbench run prices``, about 9 minutes on 2 cores once the world
    is built): at $1.00 a human and $0.10 an AI comparison, every claim of claim 7 holds on
    seeds 100-109 (bench/presets/prices.toml): a thousand AI labels beat a
    hundred human ones at the same $100, lose to a thousand human ones, and four thousand lose
    more. Each is a 95% interval from the run's own findings."""
    m = config.load("prices").model_copy(update={"progress": False})
    assert m.seeds == CLAIMS_SEEDS and m.prices == {"comparisons": 1.0, "ai_comparisons": 0.1}
    _run(tmp_path, m)
    found = {f["id"]: f for f in json.loads((tmp_path / "findings.json").read_text())}
    assert set(found) == {"7a", "7b", "7c", "7d"}
    for cid, f in found.items():
        assert f["verdict"] == "holds", (cid, f["claim"], f["effect"], f["lo"], f["hi"])


# Seeds the zoo's settings were not chosen on (it was developed on seeds 0-2, where one 2-core machine
# read rloo +0.031 [-0.001, 0.062] and another +0.043 [0.008, 0.078]: an effect
# at the edge of three seeds, decided by float rounding).
CONFIRMATION_SEEDS = list(range(3, 10))


@pytest.mark.slow
@pytest.mark.science
def test_rloo_beats_sft_at_the_zoos_budgets_on_confirmation_seeds(tmp_path):
    """The zoo report's claim for rloo, on seeds 3-9 (disjoint from the seeds its settings were
    chosen on) at the seven-seed 1% standard above: rloo beats SFT on gold win-rate, paired per
    seed, its noise floor included. Measured on 2 cores:
    rloo +0.028 [0.012, 0.045], positive on every seed. grpo read +0.018 [0.001, 0.035] there,
    too close to the null to assert without flaking; docs/methods.md reports it as such."""
    from bench.stats import paired_seed_delta

    m = config.load("zoo").model_copy(update={"progress": False})
    dump = m.model_dump(mode="json")
    m = config.parse({**dump, "methods": ["sft", "rloo"], "evals": ["win_rate"],
                      "seeds": CONFIRMATION_SEEDS,
                      "eval": {"win_rate": {**dump["eval"]["win_rate"], "references": ["sft"]}},
                      "sweep": {}})
    recs = _run(tmp_path, m)
    by = {(r["method"], r["seed"]): r for r in recs}
    w = "win_rate.vs_sft"

    def col(method, part):
        return [by[method, s][part][w] for s in CONFIRMATION_SEEDS]
    gap, low, high = paired_seed_delta(col("rloo", "metrics"), col("sft", "metrics"),
                                       col("rloo", "uncertainty"), col("sft", "uncertainty"),
                                       level=LEVEL)
    assert low > 0, ("rloo does not beat sft", gap, low, high)
