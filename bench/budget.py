"""The shared-budget ledger (docs/design.md, "Budgets and the ledger").

Every label and every sampled response goes through :meth:`Ledger.charge`. Hard-capped units
raise :class:`BudgetExceeded` *before* anything is spent, so a method that asks for too much
stops with its ledger exactly at what it had legitimately spent.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from bench.errors import UserError

HARD_UNITS = ("demonstrations", "comparisons", "ai_comparisons", "ratings", "rollouts",
              "samples_per_response")
RECORDED_UNITS = ("train_tokens", "flops", "inference_flops", "wall_seconds")
UNITS = HARD_UNITS + RECORDED_UNITS
COMPUTE_UNITS = ("train_tokens", "flops")  # recorded, and capped when the budget sets them


def compute_caps(budget: dict[str, float | None]) -> dict[str, float]:
    """The compute caps a cell's budget sets (``train_tokens``, ``flops``)."""
    return {u: float(budget[u]) for u in COMPUTE_UNITS if budget.get(u) is not None}


def compute_capped(budget: dict[str, float | None]) -> bool:
    """Whether a cell's budget caps its compute (a capped cell trains its stages under it)."""
    return bool(compute_caps(budget))


class BudgetExceeded(UserError, RuntimeError):
    def __init__(self, unit: str, cap: float, spent: float, asked: float):
        super().__init__(
            f"budget exceeded: {unit} asked for {asked:g} with {spent:g} of {cap:g} already spent "
            f"(cap {cap:g}); raise budget.{unit} in the matrix or ask for less"
        )
        self.unit, self.cap, self.spent, self.asked = unit, cap, spent, asked


def capped(budget: dict[str, float | None], unit: str) -> int:
    """The cap on a unit a method spends in full; an uncapped one has no amount to spend."""
    cap = budget.get(unit)
    if cap is None:
        raise ValueError(f"spends the whole {unit} budget, which is uncapped; set budget.{unit}")
    return int(cap)


def training_flops(n_params: int, tokens: int) -> float:
    """Kaplan et al. (2020) estimate: 6 N per training token (forward + backward)."""
    return 6.0 * n_params * tokens


def inference_flops(n_params: int, tokens: int) -> float:
    """2 N per token of a forward pass."""
    return 2.0 * n_params * tokens


@dataclass
class Ledger:
    """Caps per unit (None = uncapped) and what has been spent.

    ``caps`` holds the budget *given*; ``spent`` what was used. Units not in HARD_UNITS are
    recorded, and capped only when a cap is set."""

    caps: dict[str, float | None] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=lambda: {u: 0.0 for u in UNITS})
    _t0: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        unknown = set(self.caps) - set(UNITS)
        if unknown:
            raise ValueError(f"unknown budget unit(s) {sorted(unknown)}; known: {list(UNITS)}")
        for u in UNITS:
            self.spent.setdefault(u, 0.0)

    def remaining(self, unit: str) -> float:
        cap = self.caps.get(unit)
        return float("inf") if cap is None else cap - self.spent[unit]

    def charge(self, unit: str, amount: float = 1) -> None:
        """Spend ``amount`` of ``unit``, or raise BudgetExceeded and spend nothing."""
        if unit not in self.spent:
            raise ValueError(f"unknown budget unit {unit!r}; known: {list(UNITS)}")
        if amount < 0:
            raise ValueError(f"cannot charge a negative amount ({amount}) of {unit}")
        cap = self.caps.get(unit)
        if cap is not None and self.spent[unit] + amount > cap + 1e-9:
            raise BudgetExceeded(unit, cap, self.spent[unit], amount)
        self.spent[unit] += amount

    def charge_all(self, amounts: dict[str, float]) -> None:
        """Spend several units at once: all of them, or (BudgetExceeded) none."""
        for unit, amount in amounts.items():
            cap = self.caps.get(unit)
            if cap is not None and self.spent[unit] + amount > cap + 1e-9:
                raise BudgetExceeded(unit, cap, self.spent[unit], amount)
        for unit, amount in amounts.items():
            self.charge(unit, amount)

    def record_training(self, n_params: int, tokens: int, *, reference_params: int = 0,
                        forward_tokens: int = 0) -> None:
        """Charge a training step's tokens and FLOPs (6 N per token, plus 2 N per token for a
        frozen reference that reads the same tokens, plus 2 N per token for each of the two
        on ``forward_tokens`` that both only read, as KTO's KL estimate does) before the step
        runs: a compute cap then stops training at the cap, never after it."""
        self.charge_all({"train_tokens": tokens,
                         "flops": training_flops(n_params, tokens)
                         + inference_flops(reference_params, tokens)
                         + inference_flops(n_params + reference_params, forward_tokens)})


    def absorb(self, spent: dict[str, float]) -> None:
        """Charge what a cached shared stage spent, as if this cell had spent it itself."""
        for unit, amount in spent.items():
            if unit != "wall_seconds" and amount:
                self.charge(unit, amount)

    def snapshot(self) -> dict[str, dict[str, float | None]]:
        spent = dict(self.spent)
        spent["wall_seconds"] = spent["wall_seconds"] + (time.perf_counter() - self._t0)
        return {"given": {u: self.caps.get(u) for u in UNITS}, "spent": spent}


# --------------------------------------------------------------------------- inference FLOPs
#
# Training compute is charged step by step by the trainers' wrappers (``record_training``).
# What a cell computes *without* gradients -- sampling responses, scoring them with a reward
# model or a judge, every forward pass of its evaluation -- is charged to ``inference_flops``
# (2 N per token a model processes) by the few functions every such pass goes through:
# bench.sampling.sample (each step's input, padding included: the compute is spent on it),
# HFPolicy.logprob_ids (each pair's context and continuation, with no credit for a shared
# prefix's cache: an upper bound), the reward model's scoring, and TRL's own generation in
# rloo/grpo. They do not hold the ledger, so the runner names the ledger that pays for the
# current phase with :func:`charging` (the cell's while it trains, the evaluation's while it
# evaluates, a cached stage's own while it is built, so that reusing the stage charges what
# building it cost, as for every other unit). Outside any phase nothing is charged.

_paying: list[Ledger] = []


@contextmanager
def charging(ledger: Ledger) -> Iterator[Ledger]:
    """Inference FLOPs computed inside this block are charged to ``ledger``."""
    _paying.append(ledger)
    try:
        yield ledger
    finally:
        _paying.pop()


def charge_inference(model, tokens: int) -> None:
    """A forward pass of ``model`` (a torch module) over ``tokens`` tokens, without gradients."""
    if _paying:
        charge_inference_flops(inference_flops(sum(p.numel() for p in model.parameters()),
                                               tokens))


def charge_inference_flops(flops: float) -> None:
    """Inference FLOPs computed once and reused (cached reference samples), charged again."""
    if _paying:
        _paying[-1].charge("inference_flops", flops)
