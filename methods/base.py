"""The untouched base model: the control row of every matrix. Spends nothing."""

from __future__ import annotations

from bench.api import MethodConfig, Policy, TrainContext


class Base:
    name = "base"
    description = "the pretrained base model, unaligned (control row)"

    class Config(MethodConfig):
        pass

    def train(self, base: Policy, ctx: TrainContext, config: Config) -> Policy:
        return base
