"""What a training loop measures beside its curves against the scenario's gold reward, charged to
no budget: the gold reward of a method's own samples, and how often a learned reward model orders
two samples as the gold reward does (Gao et al. 2022, "Scaling laws for reward model
overoptimization": the proxy against gold, round by round).

Methods reach these through ``TrainContext.monitor_gold`` and
``TrainContext.monitor_reward_model``, which append the points to the cell's curves and keep the
gold reward itself out of the method's hands: a method never sees a gold value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench import meter
from bench.budget import Ledger, charging
from bench.seeding import derive_seed

if TYPE_CHECKING:  # the contracts call this module: it imports them for annotations only
    from bench.api.world import Policy, RewardFn

MONITOR_PHASE = "gold monitor"  # the cell's time spent measuring, apart from training


def gold_point(gold: RewardFn | None, step: int, prompts: list[str], completions: list[str],
               values: dict[str, float]) -> dict[str, float]:
    """One curve point: ``step``, ``values`` as floats, and ``gold_reward``, the mean gold
    reward of ``completions`` (one per prompt) where the scenario has a gold reward."""
    point = {"step": float(step), **{k: float(v) for k, v in values.items()}}
    if gold is not None:
        with meter.phase(MONITOR_PHASE, measurement=True):  # measurement, not training
            point["gold_reward"] = float(np.mean(gold(prompts, completions)))
    return point


def reward_model_point(gold: RewardFn, step: int, reward_fn: RewardFn, prompts: list[str],
                       samplers: dict[str, Policy], *, seed: int, max_new_tokens: int
                       ) -> dict[str, float]:
    """One curve point: ``step``, and for each named sampler two completions of each prompt
    (two named streams under ``seed``, temperature 1, at most ``max_new_tokens``) with
    ``rm_vs_gold.NAME``, the share of those pairs ``reward_fn`` orders as ``gold`` does (pairs
    either one ties left out; NaN when none is left), and ``pairs.NAME``, how many counted.
    Its samples and scores are measurement: charged to a ledger of its own, never a cell's."""
    point = {"step": float(step)}
    with meter.phase(MONITOR_PHASE, measurement=True), charging(Ledger(caps={})):
        for name, policy in samplers.items():
            a, b = (policy.generate(prompts, max_new_tokens=max_new_tokens, temperature=1.0,
                                    seed=derive_seed(seed, "monitor.samples", i))
                    for i in (0, 1))
            ra, rb = reward_fn(prompts, a), reward_fn(prompts, b)
            ga, gb = gold(prompts, a), gold(prompts, b)
            hits = [(x > y) == (u > v) for x, y, u, v in zip(ra, rb, ga, gb)
                    if x != y and u != v]
            point[f"rm_vs_gold.{name}"] = sum(hits) / len(hits) if hits else float("nan")
            point[f"pairs.{name}"] = float(len(hits))
    return point
