"""Throwaway plugins used by the tests, registered through (patched) entry points."""

from __future__ import annotations

import os
from pathlib import Path

from bench.api import MethodConfig, NonFiniteError, Trained


class Echo:
    """A third-party method: returns the SFT model, counting its calls in a file."""

    name = "echo"
    description = "test plugin: the SFT model, unchanged"
    starts_from = "sft"
    shared_stage = False

    class Config(MethodConfig):
        tag: str = "x"

    def train(self, start, ctx, config):
        counter = os.environ.get("ALIGNBENCH_TEST_COUNTER")
        if counter:
            with open(counter, "a") as f:
                f.write(f"{ctx.seed}\n")
        return Trained(policy=start.reference)


class Frozen:
    """Trains a copy of its start and leaves it unchanged: what a learning rate of 0, or a
    warm-up spanning the only step, does (a KTO plugin did this and read exactly like SFT)."""

    name = "frozen"
    description = "test plugin: a trained copy that never moved"
    starts_from = "sft"
    shared_stage = False

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        return Trained(policy=start.trainable())


class Exploding:
    """A method whose loss turns NaN at step 3."""

    name = "exploding"
    starts_from = "base"
    shared_stage = False
    description = "test plugin: NaN loss"

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        raise NonFiniteError("loss", 3)


class FakeEP:
    def __init__(self, name, value, dist="alignbench-test-plugins", version="0.1"):
        self.name, self.value = name, value
        self.dist = type("D", (), {"name": dist, "version": version})()


def patch_entry_points(monkeypatch, extra: dict[str, list[FakeEP]]) -> None:
    """The installed entry points (alignbench's built-ins among them) plus ``extra``, as if
    another distribution registered those."""
    import importlib.metadata

    import bench.registry as reg

    def fake(group):
        return [*importlib.metadata.entry_points(group=group), *extra.get(group, [])]
    monkeypatch.setattr(reg, "entry_points", fake)
    reg.reset()  # conftest resets again after the test, when the real entry points are back


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class Raising:
    """A method with a bug."""

    name = "raising"
    starts_from = "base"
    shared_stage = False
    description = "test plugin: raises"

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        raise KeyError("oops")


class Overspending:
    """A method that declares no plan and asks the ledger for more rollouts than it has."""

    name = "overspending"
    starts_from = "base"
    shared_stage = False
    description = "test plugin: samples 3 rollouts at a time until the ledger refuses"

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        while True:
            ctx.ledger.charge("rollouts", 3)


class Startless:
    """A method written against the old contract: no starts_from."""

    name = "startless"
    description = "test plugin: declares no start"

    class Config(MethodConfig):
        pass

    def train(self, base, ctx, config):
        return base


class StartsFromPPO:
    """A method that starts from a method that is not a shared stage."""

    name = "after_ppo"
    description = "test plugin: starts from ppo"
    starts_from = "ppo"
    shared_stage = False

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        return Trained(policy=start.reference)


class ReturnsPolicy:
    """A method written against the old contract: returns a Policy, not a Trained."""

    name = "returns_policy"
    description = "test plugin: old-style result"
    starts_from = "base"
    shared_stage = False

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        return start.reference


class SpendlessStage:
    """A shared stage that names no budget unit it spends."""

    name = "spendless"
    description = "test plugin: a stage with no planned_spend"
    starts_from = "base"
    shared_stage = True

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        return Trained(policy=start.reference)


class AfterSpendless(StartsFromPPO):
    name = "after_spendless"
    starts_from = "spendless"


class StageAfterSFT(SpendlessStage):
    name = "stage_after_sft"
    starts_from = "sft"
