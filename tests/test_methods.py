"""Pure parts of the methods beyond the seed's four (issue 18), with known answers."""

from methods.common import warmup
from methods.kto import unpaired


def test_kto_labels_from_ranked_pairs_top_half_desirable_median_dropped():
    ranked = ["a", "b", "c", "d", "e"]  # best first, as the panel ranked them
    pairs = [{"prompt": "p", "chosen": ranked[i], "rejected": ranked[j]}
             for i in range(5) for j in range(i + 1, 5)]
    got = {(e["completion"], e["label"]) for e in unpaired(pairs, 5)}
    assert got == {("a", True), ("b", True), ("d", False), ("e", False)}
    pairs4 = [p for p in pairs if "e" not in (p["chosen"], p["rejected"])]  # K=4: no median
    assert {(e["completion"], e["label"]) for e in unpaired(pairs4, 4)} == {
        ("a", True), ("b", True), ("c", False), ("d", False)}


def test_warmup_never_swallows_a_one_step_run():
    assert warmup(0.05, 32, 32, 1.0) == 0.0  # one step: it would train at lr 0
    assert warmup(0.05, 33, 32, 1.0) == 0.05  # two steps
    assert warmup(0.05, 20, 32, 2.0) == 0.05  # one batch, two epochs: two steps
    assert warmup(0.05, 10, 32, 0.5) == 0.0
