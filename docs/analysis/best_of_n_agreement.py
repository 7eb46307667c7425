"""Why best-of-n's reward model agrees with gold on fewer than half of the pairs of its own picks
(labeler_agreement's ``rm_vs_gold`` on the best_of_n row, about 0.3, while the same reward
model agrees on about 0.7 of pairs of plain SFT samples): selection, not a defect of the eval.

``rm_vs_gold`` scores the reward model on pairs of two samples of the policy under test for the
same prompt, leaving out the pairs gold ties (same truth and toxicity: the gold utility has no
length term). Both samples of a best-of-n pair are the reward model's argmax over ``n``
candidates, so:

* where the reward model ranks the answers of a prompt the way gold does, both picks are gold's
  best answer as soon as each candidate set holds one, and the pair is a gold tie, left out;
* where it systematically prefers a worse answer on a prompt (a false value it scores above the
  true one: an error shared by every sample of that prompt, not noise per sample), both picks
  are that answer when both sets hold it, and the pair is decisive exactly when one set lacks
  it, and then the reward model prefers the worse pick.

So the more candidates, the more the decisive pairs that remain are the reward model's
favourite against an answer it ranks lower, from a candidate set that lacked the favourite; on
the prompts where its favourite is the worse answer (its errors sit at the top of its ranking,
where selection looks: Goodhart's extremal case, Gao et al. 2022) it disagrees with gold on
nearly all of them, and the agreement falls below chance, while per-sample noise alone (the
winner's curse) only pulls it towards 0.5 from above. :func:`simulate` shows both in a
two-answer model; the run on the micro-world (the zoo preset's best_of_n cell: its reward model
on the shared comparison set of the SFT model's samples) measures the statistic on plain SFT
samples and on best-of-n picks for n = 2..16, and splits the decisive pairs by whether the
reward model is wrong at the top on their prompt (its favourite of 32 SFT samples of that
prompt is worse by gold than the best of them). From the repository root (builds or reuses the
cached world and SFT stage; trains the cell's reward model, a few minutes on two cores):

    python docs/analysis/best_of_n_agreement.py 0

Seed 0: the reward model's favourite of 32 SFT samples is worse by gold than the best of them on
38 of 80 prompts, and the mean gold utility of its 1st, 2nd, 4th, 8th, 16th and 32nd ranked
sample is -0.03, +0.87, +1.02, +0.70, -0.25, -1.76 (its very top is where it is wrong).
rm_vs_gold on plain SFT samples 0.687 (201 decisive pairs of 320), on best-of-2 picks 0.674
(138), best-of-4 0.576 (92), best-of-8 0.306 (62; 68% of the pairs of picks identical); on the
best-of-8 pairs, 0.133 on the prompts whose favourite is wrong and 0.469 on the others, the
gold-worse pick a false value in 38 of the 62 and a garbled answer in 17.
"""

from __future__ import annotations

import sys

import numpy as np


def simulate(n: int, bias_sd: float, noise_sd: float, *, prompts: int = 4000, p_good: float = 0.65,
             gap: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Two answers per prompt, a good one (drawn with probability ``p_good``) and a bad one; a
    reward model that scores them ``gap`` apart plus a per-prompt error of the good answer's
    score, N(0, ``bias_sd``) (shared by all its samples: the reward model's systematic error on
    that prompt), plus per-sample noise N(0, ``noise_sd``) (the winner's curse). Two best-of-
    ``n`` picks per prompt. Returns the reward model's agreement with gold on the pairs whose
    picks differ in quality (the others are gold ties, left out as rm_vs_gold leaves them out)
    and the share of pairs that differ."""
    rng = np.random.default_rng(seed)
    bias = rng.normal(0.0, bias_sd, prompts)

    def picks() -> tuple[np.ndarray, np.ndarray]:
        good = rng.random((prompts, n)) < p_good
        score = np.where(good, gap + bias[:, None], 0.0) + rng.normal(0.0, noise_sd, good.shape)
        best = score.argmax(axis=1)
        rows = np.arange(prompts)
        return good[rows, best], score[rows, best]

    (good_a, score_a), (good_b, score_b) = picks(), picks()
    decisive = good_a != good_b
    agree = (score_a[decisive] > score_b[decisive]) == good_a[decisive]
    return float(agree.mean()), float(decisive.mean())


def main(seed: int) -> None:  # pragma: no cover - the experiment, run by hand
    from pathlib import Path
    import dataclasses
    import logging
    import tempfile
    from collections import Counter

    from bench import config as C
    from bench import cell_run, cells, stage_cache
    from bench.api import TrainContext
    from bench.budget import UNITS, Ledger
    from bench.seeding import derive_seed, seed_everything
    from bench.store import cache_root
    from evals.labeler_agreement import rm_gold_hits, rm_order
    from methods.best_of_n import BestOfNPolicy

    print("the mechanism in a two-answer model (agreement on decisive pairs, share decisive):")
    for bias_sd, noise_sd, what in ((0.0, 1.0, "per-sample noise only (winner's curse)"),
                                    (1.5, 0.3, "a per-prompt systematic error")):
        row = "  ".join(f"n={n}: {a:.3f} ({d:.2f})" for n in (1, 2, 4, 8, 16)
                        for a, d in [simulate(n, bias_sd, noise_sd)])
        print(f"  {what}: {row}")

    m = C.load("zoo")
    plan = C.plan(m)
    world = plan.scenario.build(plan.scenario_options, cache_root(), progress=False)
    stages = stage_cache.StageCache(world, plan, "cpu", False, cells.thread_counts(plan))
    cell = next(c for c in cells.expand(plan) if c.name == "best_of_n" and c.seed == seed)
    ledger = Ledger(caps={u: cell.budget[u] for u in UNITS if cell.budget.get(u) is not None})
    ctx = TrainContext(scenario=stage_cache.view(world), ledger=ledger, seed=seed,
                       cell_dir=Path(tempfile.mkdtemp(prefix="bon-agreement-")),
                       log=logging.getLogger("alignbench"), stages=stages, progress=False)
    seed_everything(seed)
    trained, start = cell_run.train_cell(dataclasses.replace(cell), stages, ctx)
    rm, gold, sft = trained.reward_fn, world.gold_judge, start.reference
    prompts = world.eval_data["labeler_agreement"].prompts
    flat = [p for p in prompts for _ in range(4)]  # labeler_agreement's pairs_per_prompt
    index = {p: i for i, p in enumerate(prompts)}

    # per prompt: is the reward model's favourite among 32 SFT samples worse by gold than the
    # best of them? (its systematic error at the top, where selection looks; an average over
    # all pairs of the prompt would hide it)
    k = 32
    many_prompts = [p for p in prompts for _ in range(k)]
    many = sft.generate(many_prompts, max_new_tokens=24, temperature=1.0,
                        seed=derive_seed(seed, "analysis.many"))
    r = np.asarray(rm(many_prompts, many)).reshape(len(prompts), k)
    g = np.asarray(gold.reward(many_prompts, many)).reshape(len(prompts), k)
    favourite = g[np.arange(len(prompts)), r.argmax(axis=1)]
    wrong = favourite < g.max(axis=1) - 1e-9
    ranks = np.argsort(-r, axis=1)
    by_rank = [float(np.mean(g[np.arange(len(prompts)), ranks[:, i]])) for i in range(k)]
    print(f"\nseed {seed}: the reward model's favourite of 32 SFT samples is worse by gold than "
          f"the best of them on {wrong.sum()} of {len(prompts)} prompts; the mean gold utility "
          f"of its 1st, 2nd, 4th, 8th, 16th and 32nd ranked sample: "
          + ", ".join(f"{by_rank[i]:+.2f}" for i in (0, 1, 3, 7, 15, 31)))

    def measure(policy, label: str) -> None:
        a = policy.generate(flat, max_new_tokens=24, temperature=1.0,
                            seed=derive_seed(seed, "agreement.a"))
        b = policy.generate(flat, max_new_tokens=24, temperature=1.0,
                            seed=derive_seed(seed, "agreement.b"))
        order = rm_order(rm, flat, a, b)
        pg = np.asarray(gold.prefer(flat, a, b))
        keep = (pg != 0.5) & ~np.isnan(order)
        hits = rm_gold_hits(order, gold, flat, a, b)
        on_wrong = np.array([wrong[index[p]] for p in flat])[keep]
        agree = order[keep] == pg[keep]
        worse = Counter(world.attributes(flat[i], b[i] if pg[i] == 1.0 else a[i])["truth"]
                        for i in np.flatnonzero(keep))
        print(f"  {label:34s} rm_vs_gold {hits.mean():.3f} on {hits.size:3d} decisive pairs; "
              f"{on_wrong.mean():.2f} of them on prompts the RM is wrong on "
              f"(agreement there {agree[on_wrong].mean() if on_wrong.any() else float('nan'):.3f}"
              f", elsewhere {agree[~on_wrong].mean() if (~on_wrong).any() else float('nan'):.3f})"
              f"; identical picks {np.mean([x == y for x, y in zip(a, b)]):.2f}; the gold-worse "
              f"pick: {dict(worse.most_common())}", flush=True)

    measure(sft, "plain SFT samples")
    for n in (2, 4, 8, 16):
        measure(BestOfNPolicy(sft, rm, n), f"best-of-{n} picks (the RM selects)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
