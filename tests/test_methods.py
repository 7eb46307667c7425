"""Pure parts of the methods beyond the seed's four (issue 18), with known answers."""

from methods.common import warmup
from methods.kto import unpaired


def test_kto_labels_from_ranked_pairs_top_half_desirable_median_dropped():
    ranked = ["a", "b", "c", "d", "e"]  # best first, as the panel ranked them
    pairs = [{"prompt": "p", "chosen": ranked[i], "rejected": ranked[j]}
             for i in range(5) for j in range(i + 1, 5)]
    got = {(e["completion"], e["label"]) for e in unpaired(pairs)}
    assert got == {("a", True), ("b", True), ("d", False), ("e", False)}
    pairs4 = [p for p in pairs if "e" not in (p["chosen"], p["rejected"])]  # K=4: no median
    assert {(e["completion"], e["label"]) for e in unpaired(pairs4)} == {
        ("a", True), ("b", True), ("c", False), ("d", False)}


def test_warmup_never_swallows_a_one_step_run():
    assert warmup(0.05, 32, 32, 1.0) == 0.0  # one step: it would train at lr 0
    assert warmup(0.05, 33, 32, 1.0) == 0.05  # two steps
    assert warmup(0.05, 20, 32, 2.0) == 0.05  # one batch, two epochs: two steps
    assert warmup(0.05, 10, 32, 0.5) == 0.0


def _cells(method: str, values: list[float], metric: str = "win_rate.vs_sft") -> list[dict]:
    return [{"method": method, "seed": s, "metrics": {metric: v}, "uncertainty": {}}
            for s, v in enumerate(values)]


def test_first_probabilities_known_answers():
    from reports.ranking import first_probabilities
    # a always ahead at every seed: first in every resample
    assert first_probabilities({"a": [0.6, 0.7, 0.8], "b": [0.5, 0.6, 0.7]}) == \
        {"a": 1.0, "b": 0.0}
    # identical rows tie in every resample and share it
    p = first_probabilities({"a": [0.6, 0.4], "b": [0.6, 0.4]})
    assert p == {"a": 0.5, "b": 0.5}
    # two seeds, each row best at one: a resample's mean favours a when it draws seed 0
    # twice (1/4), b when seed 1 twice (1/4), and ties otherwise (1/2): 1/2 each overall
    p = first_probabilities({"a": [0.9, 0.1], "b": [0.1, 0.9]}, n_boot=20000)
    assert abs(p["a"] - 0.5) < 0.02 and abs(p["a"] + p["b"] - 1) < 1e-9
    assert first_probabilities({"a": [0.9], "b": [0.1]}) == {"a": None, "b": None}
    # lower is better
    assert first_probabilities({"a": [1.0, 2.0], "b": [3.0, 4.0]}, higher=False)["a"] == 1.0


def test_rank_orders_rows_and_resolves_only_what_the_seeds_support():
    from reports.ranking import rank
    groups = {"sft": _cells("sft", [0.50, 0.50, 0.50]),
              "ppo": _cells("ppo", [0.60, 0.61, 0.62]),  # ahead of sft by 0.10 +- 0.01
              "dpo": _cells("dpo", [0.70, 0.40, 0.55])}  # mean 0.55, noisy
    rk = rank(groups)
    assert [r["label"] for r in rk["rows"]] == ["ppo", "dpo", "sft"]
    pairs = {(p["a"], p["b"]): p for p in rk["pairs"]}
    assert pairs["ppo", "sft"]["resolved"] and abs(pairs["ppo", "sft"]["delta"] - 0.11) < 1e-9
    assert not pairs["dpo", "sft"]["resolved"] and not pairs["ppo", "dpo"]["resolved"]
    assert abs(sum(r["p_first"] for r in rk["rows"]) - 1) < 1e-9
    assert rk["rows"][-1]["p_first"] == 0.0  # sft is never first
    assert rank({"sft": groups["sft"]}) is None
