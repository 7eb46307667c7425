"""A larger unaligned model pretrained on the same corpus (the micro-world's ``large_base``,
``reference_scale`` times wider than the base): the row that tests whether a small aligned model
is preferred to a larger unaligned one (InstructGPT's 1.3B against GPT-3's 175B), and what size
alone buys. Like the base row, it trains nothing and spends nothing."""

from __future__ import annotations

from bench.api import Start, TrainContext, Trained
from methods.base import Base

NAME = "large_base"  # the scenario's name for it (World.reference_models)


class LargeBase(Base):
    name = "large_base"
    description = "a wider base model pretrained on the same corpus, unaligned (needs the " \
                  "micro-world's reference_scale)"

    def train(self, start: Start, ctx: TrainContext, config: Base.Config) -> Trained:
        if NAME not in ctx.scenario.reference_models:
            raise ValueError("large_base: this scenario pretrains no larger model; set "
                             "scenario.options.reference_scale (e.g. 2) in the micro-world")
        # frozen and shared with the evals' references: nothing trains it
        return Trained(policy=ctx.stages.scenario_model(NAME))
