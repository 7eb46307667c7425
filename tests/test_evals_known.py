"""Known answers for eval outputs the report prints: KL of a model to itself, and the reward
model's agreement with the panel and with gold for hand-built reward functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.api import EvalContext, Trained
from bench.budget import Ledger
from bench.stage_cache import FrozenReference
from evals.kl import KL
from evals.labeler_agreement import LabelerAgreement


def ctx(world, refs=None, trained=None, options=None, eval_name="kl"):
    return EvalContext(world=world, seed=0, references=refs or {}, trained=trained, curves={},
                       options=options or KL.Options(), ledger=Ledger(),
                       data=world.eval_data.get(eval_name), progress=False)


def test_kl_of_a_model_to_itself_is_zero_and_to_another_is_positive(tiny_world, tiny_policy):
    same = KL().evaluate(tiny_policy, ctx(tiny_world, {"sft": FrozenReference(tiny_policy)}))
    assert same.metrics["k1"] == 0.0 and same.uncertainty["k1"] == 0.0
    other = tiny_world.load_policy(tiny_world.base_model)
    with torch.no_grad():
        torch.manual_seed(0)
        for p in other.model.parameters():
            if p.dim() > 1:  # matrices only: the model stays a working model, just another one
                p.add_(torch.randn_like(p) * 0.3)
    moved = KL().evaluate(other, ctx(tiny_world, {"sft": FrozenReference(tiny_policy)}))
    assert moved.metrics["k1"] > 3 * moved.uncertainty["k1"] > 0


def agreement(world, policy, reward):
    return LabelerAgreement().evaluate(policy, ctx(
        world, trained=Trained(policy=policy, reward_fn=reward),
        options=LabelerAgreement.Options(), eval_name="labeler_agreement"))


def test_reward_model_agreement_for_hand_built_rewards(tiny_world, tiny_policy):
    gold = tiny_world.gold_reward
    res = agreement(tiny_world, tiny_policy, gold)
    # the gold reward as the reward model agrees with the gold judge on every untied pair
    assert res.metrics["rm_vs_gold"] == 1.0
    flipped = agreement(tiny_world, tiny_policy, lambda p, c: [-x for x in gold(p, c)])
    assert flipped.metrics["rm_vs_gold"] == 0.0
    # on the same labels (same seeds), a reward and its negation split every decided pair
    assert res.metrics["rm_vs_labelers"] + flipped.metrics["rm_vs_labelers"] == pytest.approx(1)
    # the labelers are noisy readers of gold: they agree with it more often than chance
    assert 0.5 < res.metrics["rm_vs_labelers"] < 1.0
    # a constant reward decides no pair: there is nothing to agree with
    flat = agreement(tiny_world, tiny_policy, lambda p, c: [0.0] * len(c))
    assert math.isnan(flat.metrics["rm_vs_labelers"])
    assert np.isclose(res.metrics["inter_labeler"], flat.metrics["inter_labeler"])


class Says:
    """A policy that answers every prompt with the same text."""

    name = "says"

    def __init__(self, text: str):
        self.text = text

    def format_chat(self, msgs):
        return list(msgs)

    def generate(self, prompts, *, max_new_tokens, temperature=1.0, seed=0):
        return [self.text] * len(prompts)

    def logprob(self, prompts, completions):
        return [0.0] * len(prompts)


@pytest.mark.parametrize("text, emt, prob", [(" red , you idiot .", 0.5, 1.0),
                                             (" idiot , you fool .", 0.75, 1.0),
                                             (" red .", 0.0, 0.0)])
def test_toxicity_reads_the_scenarios_prompts_and_scores_known_answers(tiny_world, text, emt,
                                                                       prob):
    from bench.api import DataError
    from evals.toxicity import Toxicity, ToxicityOptions

    def tox_ctx(data):
        return EvalContext(world=tiny_world, seed=0, references={}, trained=None, curves={},
                           options=ToxicityOptions(k=3, limit=5), ledger=Ledger(),
                           data=data, progress=False)
    res = Toxicity().evaluate(Says(text), tox_ctx(tiny_world.eval_data["toxicity"]))
    assert res.n == 5 and res.extra["k"] == 3 and res.extra["scorer"] == "micro-lexicon"
    assert res.metrics["emt"] == emt and res.metrics["mean"] == emt
    assert res.metrics["probability"] == prob and res.metrics["toxic_fraction"] == prob
    assert res.rows[0]["prompt"] == tiny_world.eval_data["toxicity"].prompts[0]
    with pytest.raises(DataError, match="toxicity prompts"):
        Toxicity().evaluate(Says(text), tox_ctx(None))


def test_an_eval_without_its_scenario_data_names_it(tiny_world, tiny_policy):
    """A scenario that supplies no prompts for an eval is a DataError naming the eval, not a
    NaN metric that fails every cell later."""
    import dataclasses

    from bench.api import DataError
    bare = dataclasses.replace(tiny_world, eval_data={})
    with pytest.raises(DataError, match="eval kl: the scenario supplies no prompts"):
        KL().evaluate(tiny_policy, ctx(bare, {"sft": FrozenReference(tiny_policy)}))


def test_win_rate_warns_when_length_control_moves_the_rate_more_than_ten_points():
    """A judge that only likes length, and a policy that is mostly the longer side: the raw
    win-rate is high, the rate at equal length about one half, so the LC rate is over 10
    points from the raw one: recorded as the gap and as a warning (AlpacaEval 2's safeguard);
    with a policy as long as its reference, no warning."""
    import math
    from types import SimpleNamespace

    from bench.api import EvalContext, EvalData
    from bench.budget import Ledger
    from evals.win_rate import WinRate, WinRateOptions

    class Lengths:  # sample i of a call: a fixed number of words
        def __init__(self, sizes):
            self.sizes = sizes

        def generate(self, prompts, *, max_new_tokens, temperature=1.0, seed=0):
            return [" w" * self.sizes[i % len(self.sizes)] for i in range(len(prompts))]

    class LikesLength:
        def prefer(self, prompts, a, b):
            return [1 / (1 + math.exp(-(len(x.split()) - len(y.split())))) for x, y in zip(a, b)]

    def run(mine):
        ctx = EvalContext(world=SimpleNamespace(gold_judge=LikesLength(), attributes=None,
                                                judge_is_labeler=False),
                          seed=0, references={"sft": Lengths([5])}, trained=None, curves={},
                          options=WinRateOptions(samples_per_prompt=10, references=["sft"]),
                          ledger=Ledger(), data=EvalData(prompts=[f"q{i}" for i in range(20)]))
        return WinRate().evaluate(Lengths(mine), ctx)

    longer = run([7, 7, 7, 7, 7, 7, 7, 7, 4, 5])
    gap = longer.extra["lc_gap"]["vs_sft"]
    assert longer.metrics["vs_sft"] > 0.7 and gap < -0.10, longer.metrics
    assert gap == longer.metrics["lc_vs_sft"] - longer.metrics["vs_sft"]
    assert len(longer.warnings) == 1 and "lc_vs_sft" in longer.warnings[0]
    even = run([4, 6, 5, 5, 4, 6, 5, 5, 4, 6])
    assert abs(even.extra["lc_gap"]["vs_sft"]) < 0.10 and even.warnings == []
