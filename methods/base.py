"""The untouched base model: the control row of every matrix. Spends nothing."""

from __future__ import annotations

from bench.api import MethodConfig, Start, TrainContext, Trained


class Base:
    name = "base"
    description = "the pretrained base model, unaligned (control row)"
    starts_from = "base"
    shared_stage = False

    class Config(MethodConfig):
        def spends(self):
            return frozenset()

    def train(self, start: Start, ctx: TrainContext, config: Config) -> Trained:
        return Trained(policy=start.reference)  # frozen and shared: nothing trains it
