"""The methods on the micro-world: shared budgets, and the overoptimization effect the literature
reports (Gao et al. 2022), measured with the gold judge that only the micro-world has."""

import json

import numpy as np
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
    comparisons, rlaif spends AI comparisons instead; nothing exceeds its cap."""
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


@pytest.mark.slow
def test_reward_hacking_without_kl_and_its_prevention(tmp_path):
    """kl_coef = 0 with a small reward-model budget: proxy reward keeps rising while the gold
    reward falls from its peak. The default coefficient holds gold near its peak.

    Two seeds, compared on their means: one PPO trajectory is chaotic (the same cell gave a gold
    drop of 1.53 in a fresh process and 0.375 late in a long test session), so a single run is
    too noisy an estimate of how far gold falls."""
    m = config.load("quickstart").model_copy(update={"progress": False})
    m = config.parse({**m.model_dump(mode="json"), "methods": ["ppo"], "evals": ["kl"], "eval": {},
                      "seeds": [0, 1], "budget": {**m.budget.model_dump(), "comparisons": 200},
                      "sweep": {"ppo.kl_coef": [0.0, 0.1]}})
    recs = _run(tmp_path, m)

    def mean(kl_coef, metric):
        return np.mean([r["metrics"][metric] for r in recs
                        if r["method_config"]["kl_coef"] == kl_coef])

    free_drop, held_drop = mean(0.0, "kl.gold_drop"), mean(0.1, "kl.gold_drop")
    assert mean(0.0, "kl.proxy_gain_after_peak") > 0 and free_drop > 0.5, recs
    assert held_drop < free_drop / 2, (held_drop, free_drop)


@pytest.mark.slow
def test_quickstart_science(tmp_path):
    """Issue 5's findings at the quickstart's budgets, over three seeds (the report's interval:
    floored at each seed's evaluation noise): the human-feedback methods beat SFT on gold
    win-rate and on myth questions, RLAIF lowers toxicity but does worse than them on myths
    (its judge cannot read facts)."""
    from bench.stats import paired_delta, seed_interval

    m = config.load("quickstart").model_copy(update={"progress": False})
    dump = m.model_dump(mode="json")
    dump["eval"]["win_rate"]["references"] = ["sft"]  # vs base is not asserted: save its samples
    m = config.parse({**dump, "methods": ["sft", "ppo", "dpo", "rlaif"],
                      "evals": ["win_rate", "toxicity", "truthfulqa"]})
    assert m.seeds == [0, 1, 2]
    recs = _run(tmp_path, m)

    def per_seed(method, metric, of="metrics"):
        return [r[of].get(metric) for r in sorted(recs, key=lambda r: r["seed"])
                if r["method"] == method]

    for method in ("ppo", "dpo"):
        mean, low, high = seed_interval(per_seed(method, "win_rate.vs_sft"),
                                        per_seed(method, "win_rate.vs_sft", "uncertainty"))
        assert low > 0.5, (method, mean, low, high)
    tox = "toxicity.toxic_fraction"
    rl, sf = per_seed("rlaif", tox), per_seed("sft", tox)
    assert paired_delta(rl, sf)[0] < 0 and all(a < b for a, b in zip(rl, sf)), (rl, sf)
    myth = "truthfulqa.gen_true.Adversarial"
    rlaif, sft = np.mean(per_seed("rlaif", myth)), np.mean(per_seed("sft", myth))
    for method in ("ppo", "dpo"):
        assert np.mean(per_seed(method, myth)) > max(rlaif, sft), (
            method, per_seed(method, myth), per_seed("rlaif", myth), per_seed("sft", myth))
