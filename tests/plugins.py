"""Throwaway plugins used by the tests, registered through (patched) entry points."""

from __future__ import annotations

import os
from pathlib import Path

from bench.api import MethodConfig, NonFiniteError


class Echo:
    """A third-party method: returns the SFT model, counting its calls in a file."""

    name = "echo"
    description = "test plugin: the SFT model, unchanged"

    class Config(MethodConfig):
        tag: str = "x"

    def train(self, base, ctx, config):
        counter = os.environ.get("ALIGNBENCH_TEST_COUNTER")
        if counter:
            with open(counter, "a") as f:
                f.write(f"{ctx.seed}\n")
        return ctx.stages.sft(ctx)


class Exploding:
    """A method whose loss turns NaN at step 3."""

    name = "exploding"
    description = "test plugin: NaN loss"

    class Config(MethodConfig):
        pass

    def train(self, base, ctx, config):
        raise NonFiniteError("loss", 3)


class FakeEP:
    def __init__(self, name, value, dist="alignbench-test-plugins", version="0.1"):
        self.name, self.value = name, value
        self.dist = type("D", (), {"name": dist, "version": version})()


def patch_entry_points(monkeypatch, extra: dict[str, list[FakeEP]]) -> None:
    import bench.registry as reg

    def fake(group):
        return extra.get(group, [])
    monkeypatch.setattr(reg, "entry_points", fake)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class Raising:
    """A method with a bug."""

    name = "raising"
    description = "test plugin: raises"

    class Config(MethodConfig):
        pass

    def train(self, base, ctx, config):
        raise KeyError("oops")


class Overspending:
    """A method that declares no plan and asks the ledger for more rollouts than it has."""

    name = "overspending"
    description = "test plugin: samples 3 rollouts at a time until the ledger refuses"

    class Config(MethodConfig):
        pass

    def train(self, base, ctx, config):
        while True:
            ctx.ledger.charge("rollouts", 3)
