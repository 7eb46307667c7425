"""The methods on the micro-world: shared budgets, and the overoptimization effect the literature
reports (Gao et al. 2022), measured with the gold judge that only the micro-world has."""

import json

import pytest

from bench import config, runner


def _run(tmp_path, m) -> list[dict]:
    """Run a matrix and return its result records, every cell required to have finished."""
    runner.run(m, tmp_path)
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
    runner.run(m, tmp_path)
    (rec,) = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert rec["status"] == "failed" and "min_margin" in rec["error"], rec["error"]
    assert rec["budget"]["spent"]["ai_comparisons"] == m.budget.ai_comparisons


# Each assertion below is a one-sided test at 1%: the two-sided 98% interval's bound (the
# report's floored seed interval, bench.stats) must clear the null. A broken method, one whose
# true effect is nil (a KL penalty that does nothing, an RLAIF trained on noise, a PPO that
# returns SFT), passes one with a chance of at most 1% under the interval's t model, less where
# the floor (each seed's evaluation noise) widens it; a method that returns its start exactly
# gives a zero-width difference and always fails. Seven seeds are what resolves every effect
# asserted here: measured over seeds 0-6 at these budgets (see the closing note of issue 20),
# five seeds left PPO's and DPO's win-rate lower bounds at 0.508 and 0.511 and the reward-
# hacking gap's at 0.04, too close to their nulls for a test that must not flake.
SEEDS = list(range(7))
LEVEL = 0.98  # two-sided, so each bound is one-sided 99%


@pytest.mark.slow
@pytest.mark.science
def test_reward_hacking_without_kl_and_its_prevention(tmp_path):
    """kl_coef = 0 with a small reward-model budget: proxy reward keeps rising after gold
    peaks, and gold falls from its peak; the default coefficient holds gold near its peak.
    Compared per seed (the same reward model and rollouts seed in both arms), because one PPO
    trajectory is chaotic: the gold drop of the free arm ranged 0.63-1.67 over seeds 0-6."""
    from bench.stats import paired_seed_delta, seed_interval

    m = config.load("quickstart").model_copy(update={"progress": False})
    m = config.parse({**m.model_dump(mode="json"), "methods": ["ppo"], "evals": ["kl"], "eval": {},
                      "seeds": SEEDS, "budget": {**m.budget.model_dump(), "comparisons": 200},
                      "sweep": {"ppo.kl_coef": [0.0, 0.1]}})
    recs = _run(tmp_path, m)

    def per_seed(kl_coef, metric):
        return [r["metrics"][metric] for r in sorted(recs, key=lambda r: r["seed"])
                if r["method_config"]["kl_coef"] == kl_coef]

    free, held = per_seed(0.0, "kl.gold_drop"), per_seed(0.1, "kl.gold_drop")
    _, low, _ = seed_interval(per_seed(0.0, "kl.proxy_gain_after_peak"), level=LEVEL)
    assert low > 0, ("proxy reward did not keep rising after gold peaked", low)
    gap, low, high = paired_seed_delta(free, held, level=LEVEL)
    assert low > 0, ("the KL penalty does not hold gold", gap, low, high, free, held)


@pytest.mark.slow
@pytest.mark.science
def test_quickstart_science(tmp_path):
    """Issue 5's findings at the quickstart's budgets, over seven seeds: PPO and DPO beat SFT
    on gold win-rate, and PPO, DPO and RLAIF lower the toxic fraction against SFT, paired per
    seed. (Myth questions are not asserted: over seeds 0-6 none of the three methods' gain over
    SFT on them is resolved, nor RLAIF's shortfall against PPO; the micro-world has 20 of
    them. The README reports those intervals.)"""
    from bench.stats import paired_seed_delta, seed_interval

    m = config.load("quickstart").model_copy(update={"progress": False})
    dump = m.model_dump(mode="json")
    dump["eval"]["win_rate"]["references"] = ["sft"]  # vs base is not asserted: save its samples
    m = config.parse({**dump, "methods": ["sft", "ppo", "dpo", "rlaif"], "seeds": SEEDS,
                      "evals": ["win_rate", "toxicity"], "eval": {
                          k: v for k, v in dump["eval"].items() if k in ("win_rate", "toxicity")}})
    recs = _run(tmp_path, m)

    def per_seed(method, metric, of="metrics"):
        return [r[of].get(metric) for r in sorted(recs, key=lambda r: r["seed"])
                if r["method"] == method]

    win = "win_rate.vs_sft"
    for method in ("ppo", "dpo"):
        mean, low, high = seed_interval(per_seed(method, win), per_seed(method, win, "uncertainty"),
                                        level=LEVEL)
        assert low > 0.5, (method, mean, low, high)
    tox = "toxicity.toxic_fraction"
    for method in ("ppo", "dpo", "rlaif"):
        d, low, high = paired_seed_delta(per_seed(method, tox), per_seed("sft", tox),
                                         per_seed(method, tox, "uncertainty"),
                                         per_seed("sft", tox, "uncertainty"), level=LEVEL)
        assert high < 0, (method, d, low, high)


# Seeds the zoo's settings were not chosen on (it was developed on seeds 0-2, where CI's machine
# read rloo +0.031 [-0.001, 0.062] and the development machine +0.043 [0.008, 0.078]: an effect
# at the edge of three seeds, decided by float rounding).
CONFIRMATION_SEEDS = list(range(3, 10))


@pytest.mark.slow
@pytest.mark.science
def test_rloo_beats_sft_at_the_zoos_budgets_on_confirmation_seeds(tmp_path):
    """The zoo report's claim for rloo, on seeds 3-9 (disjoint from the seeds its settings were
    chosen on) at the seven-seed 1% standard above: rloo beats SFT on gold win-rate, paired per
    seed, its noise floor included. Measured on the 2-core development machine (2026-12-03):
    rloo +0.028 [0.012, 0.045], positive on every seed. grpo read +0.018 [0.001, 0.035] there,
    too close to the null to assert without flaking; the README reports it as such."""
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
