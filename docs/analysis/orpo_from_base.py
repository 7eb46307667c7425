"""Why ORPO from the base model reads below the SFT stage on win-rate against SFT (the zoo preset,
about 0.45 against SFT's A/A 0.49): its likelihood term is a mean over the chosen side of every
pair it trains on, and at equal labels 1000 of its 1064 pairs are comparisons ranked on the
base model's own samples, so 94% of that term imitates the base model (its best-ranked samples)
and the 64 demonstrations the SFT stage learns from are one row in seventeen.

The variants, one cell's training each, scored as the win_rate eval scores them (the gold
judge, 12 samples per prompt at temperature 0.7, the eval's seeds, against the SFT stage of the
same seed), with the gold utility's mean and the rates of true and toxic answers:

* ``sft stage``: the SFT stage against itself (the A/A value) and ``base``;
* ``orpo``: the zoo's ORPO (lambda = beta = 0.1, every pair);
* ``orpo, lambda ~ 0``: the likelihood term alone on the same pairs (beta = 1e-6; 0 is
  refused): as low as ORPO, so the odds-ratio term is not what pulls it down;
* ``orpo, demonstrations only``: the 64 demonstration pairs alone (budget.comparisons = 0);
* ``orpo, demonstrations only, lambda ~ 0``: the likelihood term on the SFT stage's data for
  the SFT stage's steps: the SFT stage's value, so ORPO's likelihood term (prompt tokens
  included, as TRL computes it) trains what SFT trains, and nothing in its data, budget or
  schedule is short.

Seed 0 (win-rate vs SFT, gold utility): sft stage 0.487, +0.63; base 0.415, +0.20; orpo 0.432
(the zoo cell's win_rate.vs_sft); orpo with lambda ~ 0 0.429, +0.29; demonstrations only 0.466,
+0.51; demonstrations only with lambda ~ 0 0.480, +0.59. Seed 1: sft stage 0.484, +0.52; base
0.430, +0.22; orpo with lambda ~ 0 0.454, +0.31; demonstrations only with lambda ~ 0 0.481, +0.49.

From the repository root (builds or reuses the cached world and SFT stage; four ORPO trainings,
some minutes each on two cores):

    python docs/analysis/orpo_from_base.py 0
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import config as C
from bench import cell_run, cells, stage_cache
from bench.api import TrainContext
from bench.budget import UNITS, Ledger
from bench.seeding import derive_seed, seed_everything
from bench.store import cache_root

VARIANTS = {  # label: (ORPO config overrides, budget overrides)
    "orpo": ({}, {}),
    "orpo, lambda ~ 0": ({"beta": 1e-6}, {}),
    "orpo, demonstrations only": ({}, {"comparisons": 0}),
    "orpo, demonstrations only, lambda ~ 0": ({"beta": 1e-6}, {"comparisons": 0}),
}


def main(seed: int) -> None:
    m = C.load("zoo")
    plan = C.plan(m)
    world = plan.scenario.build(plan.scenario_options, cache_root(), progress=False)
    stages = stage_cache.StageCache(world, plan, "cpu", False, cells.thread_counts(plan))
    gold = world.gold_judge
    prompts = world.eval_data["win_rate"].prompts
    flat = [p for p in prompts for _ in range(12)]  # the zoo's win_rate samples_per_prompt
    sft = stages.start("sft", seed, m.budget.model_dump(), Ledger()).reference
    theirs = sft.generate(flat, max_new_tokens=24, temperature=0.7,
                          seed=derive_seed(seed, "win_rate.reference"))

    def score(policy, label: str) -> None:
        mine = policy.generate(flat, max_new_tokens=24, temperature=0.7,
                               seed=derive_seed(seed, "win_rate.policy"))
        win = np.mean(gold.prefer(flat, mine, theirs))
        attrs = [world.attributes(p, r) for p, r in zip(flat, mine)]
        true = np.mean([a["truth"] == "true" for a in attrs])
        toxic = np.mean([a["toxicity"] > 0 for a in attrs])
        print(f"{label:40s} vs_sft {win:.3f}  gold utility {np.mean(gold.reward(flat, mine)):+.3f}"
              f"  true {true:.3f}  toxic {toxic:.3f}", flush=True)

    print(f"seed {seed}")
    score(sft, "sft stage")
    score(stages.base(), "base")
    cell = next(c for c in cells.expand(plan) if c.name == "orpo" and c.seed == seed)
    for label, (overrides, budget) in VARIANTS.items():
        c = dataclasses.replace(cell, budget={**cell.budget, **budget},
                                config=cell.config.model_copy(update=overrides))
        ledger = Ledger(caps={u: c.budget[u] for u in UNITS if c.budget.get(u) is not None})
        ctx = TrainContext(scenario=stage_cache.view(world), ledger=ledger, seed=seed,
                           cell_dir=Path(tempfile.mkdtemp(prefix="orpo-from-base-")),
                           log=logging.getLogger("alignbench"), stages=stages, progress=False)
        seed_everything(seed)
        trained, _ = cell_run.train_cell(c, stages, ctx)
        score(trained.policy, label)


if __name__ == "__main__":
    for s in sys.argv[1:] or ["0"]:
        main(int(s))
