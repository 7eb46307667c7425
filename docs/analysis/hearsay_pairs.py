"""Claim 2d's labels, counted: which pairs RLAIF's likelihood judge trains on, under the
claims preset's settings (its world, its SFT stage per seed, rlaif's k, sampling and
min_margin), and how many of them set a myth against the truth on a myth fact, with the side
each wording picks. Run from the repository root after ``alignbench run claims`` (it reuses
that run's cached world and SFT stages; without them it builds them):

    python docs/analysis/hearsay_pairs.py 100 101 102
"""

import sys

from bench import config as C
from bench.budget import Ledger
from bench.cells import thread_counts
from scenarios import world as W
from scenarios.micro import load_spec
from bench.seeding import derive_seed
from bench.stage_cache import StageCache
from bench.store import cache_root
from methods.feedback import judged_pairs

m = C.load("claims")
plan = C.plan(m)
world = plan.scenario.build(plan.scenario_options, cache_root(), progress=False)
stages = StageCache(world, plan, "cpu", False, thread_counts(plan))
spec = load_spec(world.base_model)
judge_model = stages.base()  # rlaif's default judge: the pretrained base model
cfg = C.method_config(m, "rlaif")
for seed in [int(s) for s in sys.argv[1:]] or [100]:
    start = stages.start("sft", seed, m.budget.model_dump(), Ledger())
    for registers in (["people say"], ["records show"]):
        judge = world.make_likelihood_judge(judge_model, registers, Ledger())
        pairs = judged_pairs(start.reference, world.train_prompts, judge, m.budget.ai_comparisons,
                             cfg.k, Ledger(), seed=derive_seed(seed, "rlaif.labels.round", 0),
                             temperature=cfg.label_temperature, max_new_tokens=cfg.max_new_tokens)
        trained = [p for p in pairs if abs(p["p_judge"] - 0.5) > cfg.min_margin]
        myth_vs_truth = myth_chosen = 0
        for p in trained:
            a = W.parse_response(spec, p["prompt"], p["chosen"])
            b = W.parse_response(spec, p["prompt"], p["rejected"])
            if a["fact_kind"] == "myth" and {a["myth"], b["myth"]} == {True, False} \
                    and "true" in (a["truth"], b["truth"]):
                myth_vs_truth += 1
                myth_chosen += a["myth"]
        print(f"seed {seed} {registers}: {len(pairs)} pairs judged (the rest tie), "
              f"{len(trained)} trained on, {myth_vs_truth} set a myth against the truth, "
              f"the myth chosen in {myth_chosen}", flush=True)
