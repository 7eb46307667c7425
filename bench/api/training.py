"""What a method receives and returns (re-exported by :mod:`bench.api`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

from bench.api.options import JSON, MethodConfig
from bench.api.world import Judge, Policy, RewardFn, TrainView
from bench.budget import Ledger

if TYPE_CHECKING:  # annotations only: importing the contracts loads no torch
    import torch
    from transformers import PreTrainedTokenizerBase


class NonFiniteError(RuntimeError):
    """A loss, reward or gradient became NaN/Inf. Carries the step for the cell's record."""

    def __init__(self, what: str, step: int):
        super().__init__(f"non-finite {what} at step {step}")
        self.what, self.step = what, step


@runtime_checkable
class TrainablePolicy(Policy, Protocol):
    """A policy backed by a transformers model, which methods train in place: what the runner
    hands a method (``Start``) and what ``World.load_policy`` returns (bench.policy.HFPolicy)."""

    model: torch.nn.Module  # a causal LM; methods may replace it (e.g. with merged adapters)
    tokenizer: PreTrainedTokenizerBase

    @property
    def device(self) -> torch.device: ...

    def context_ids(self, prompt: str) -> list[int]:
        """Token ids of ``prompt`` as generation sees it (BOS added where the model uses one)."""

    def completion_text(self, prompt: str, ids: list[int]) -> str:
        """Decode generated ``ids`` that follow ``prompt`` into completion text."""


@dataclass(frozen=True)
class Start:
    """Where a method starts, built by the runner from ``Method.starts_from``.

    ``reference`` is frozen and shared by every cell of the matrix (the base model, or the
    cached SFT stage): compare against it, compute KL to it, sample labels from it, but never
    train it. ``trainable()`` loads a fresh copy of the same weights to train in place; a
    method that trains nothing never pays for one. ``path`` holds the weights (safetensors),
    e.g. to initialize a reward model from the same backbone; ``key`` is their content key,
    for caches derived from them (a comparison set drawn from this start)."""

    name: str  # "base" or the stage method's name
    reference: TrainablePolicy
    path: Path
    key: str
    load: Callable[[], TrainablePolicy]

    def trainable(self) -> TrainablePolicy:
        return self.load()




class Stages(Protocol):
    """The matrix's shared, cached work that a method may use beyond its :class:`Start`."""

    def base(self) -> TrainablePolicy:
        """The frozen base model (e.g. RLAIF's judge). Never train it."""

    def scenario_model(self, name: str) -> TrainablePolicy:
        """One of the scenario's further frozen models (``World.reference_models``, e.g. the
        micro-world's "large_base"), shared with the evals' references. Never train it.
        KeyError when the scenario has none of that name."""

    def once(self, kind: str, key: dict[str, JSON], ledger: Ledger,
             compute: Callable[[Ledger], JSON]) -> JSON:
        """Compute ``compute(sub_ledger)`` once per content key (``kind`` plus ``key``, which
        must name everything the result depends on, e.g. the start's key and the sampling
        settings) and cache its JSON result; every cell that asks again gets the cached value.
        What the computation spent is charged to ``ledger`` on every use, so each cell's budget
        shows what it consumed. ``compute`` sees a fresh ledger with ``ledger``'s caps."""


Curves = dict[str, list[dict[str, float]]]
"""Named training curves: one dict per point, ``step`` plus any values (``gold_reward`` when the
scenario has a gold reward). Stored in the cell's result and drawn by the report."""


@dataclass(frozen=True)
class Tracking:
    """Where a cell streams its training curves while it trains (the matrix's ``report_to``),
    for researchers who watch runs in trackio, TensorBoard or wandb; the cell's result stays
    the record. ``backend`` "none" streams nothing. ``run`` is the cell's key and ``project``
    the output folder's name; ``folder`` is the cell's own tracking folder (TensorBoard's and
    wandb's files) and ``shared`` the output folder's (trackio's one database for the matrix).
    TRL trainers report through their own ``report_to`` (``methods.common.trainer_args``); a
    hand-written loop streams its points through ``bench.tracking.curve_logger``."""

    backend: Literal["none", "trackio", "tensorboard", "wandb"] = "none"
    project: str = ""
    run: str = ""
    folder: Path | None = None
    shared: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the run's settings, as recorded


@dataclass
class TrainContext:
    """Everything ``Method.train`` receives besides its start and config.

    The budget: ``ledger`` is the cell's. ``ledger.remaining(unit)`` is what the cell may
    still spend of a unit (``"demonstrations"``, ``"comparisons"``, ``"ai_comparisons"``,
    ``"ratings"``, ``"rollouts"``, ``"train_tokens"``, ``"flops"``), a float, ``inf`` where the
    matrix caps nothing; a method that spends a unit's whole budget reads it once at the start,
    ``n = int(ctx.ledger.remaining("comparisons"))``. ``ledger.charge(unit, amount)`` spends
    before the work it pays for, and raises ``BudgetExceeded`` (spending nothing) past the
    cap. The scenario's panel charges its own labels, and the helpers of ``methods.feedback``
    and ``methods.trl_train`` charge samples and training steps, so a method built from them
    charges everything it uses."""

    scenario: TrainView  # the world as training may see it (no gold judge, no eval data)
    ledger: Ledger  # the cell's budget: read remaining(unit), charge(unit, amount)
    seed: int  # the cell's seed; derive each random stream from it (bench.seeding.derive_seed)
    cell_dir: Path  # the cell's own folder (a trainer's files go under cell_dir / "trainer")
    log: logging.Logger  # INFO and above reach the cell's log.txt, warnings the terminal too
    stages: Stages  # the matrix's shared, cached work: base model, scenario models, once()
    progress: bool = True  # whether to show progress bars (off in --no-progress runs)
    device: str = "cpu"  # the matrix's device switch, resolved ("cpu" or "cuda")
    curves: Curves = field(default_factory=dict)  # stored in the result
    tracking: Tracking = field(default_factory=Tracking)  # off unless the matrix asks
    _gold_scores: RewardFn | None = None  # the gold reward per sample, for monitors only

    def monitor_gold(self, curve: str, step: int, prompts: list[str], completions: list[str],
                     **values: float) -> None:
        """Append a point to ``curves[curve]``: ``step``, the given values, plus the mean gold
        reward of these samples (one completion per prompt) when the scenario has one
        (:func:`bench.monitors.gold_point`). Write-only: the method never sees the gold
        value."""
        from bench.monitors import gold_point
        point = gold_point(self._gold_scores, step, prompts, completions, values)
        self.curves.setdefault(curve, []).append(point)

    def monitor_reward_model(self, curve: str, step: int, reward_fn: RewardFn, prompts: list[str],
                             samplers: dict[str, Policy], *, seed: int,
                             max_new_tokens: int) -> dict[str, float] | None:
        """Append a point to ``curves[curve]``: how often ``reward_fn`` orders two samples of
        each named sampler (e.g. the start and the policy being steered) as the gold reward
        does, ``rm_vs_gold.NAME``, with ``pairs.NAME`` counted
        (:func:`bench.monitors.reward_model_point`). Measurement: charged to no budget. Returns
        the point (None, and nothing recorded, where the scenario has no gold reward)."""
        if self._gold_scores is None:
            return None
        from bench.monitors import reward_model_point
        point = reward_model_point(self._gold_scores, step, reward_fn, prompts, samplers,
                                   seed=seed, max_new_tokens=max_new_tokens)
        self.curves.setdefault(curve, []).append(point)
        return point


@dataclass
class Trained:
    """What ``Method.train`` returns: the trained policy, and what else the method learned
    that evals measure. ``reward_fn`` is a learned reward (PPO's reward model: labeler_agreement
    scores it against the panel, win_rate judges with it when a scenario has no gold judge);
    ``make_ai_judge(ledger)`` rebuilds the method's AI judge on the evaluation's own ledger,
    so evaluating it never spends the method's budget. ``samples_per_response`` is what the
    policy samples to serve one answer (best-of-n's n): recorded in the budget as the
    inference-time cost of every method, 1 for a policy that answers with one sample."""

    policy: Policy
    reward_fn: RewardFn | None = None
    make_ai_judge: Callable[[Ledger], Judge] | None = None
    samples_per_response: int = 1
    # a regular expression naming the prompt family the method's feedback left out (PPO's
    # holdout_prompts): labeler_agreement reports the reward model on it apart
    held_out_prompts: str | None = None


class Method(Protocol):
    """An alignment method. ``Config`` is a flat :class:`MethodConfig` with paper defaults.

    ``starts_from`` is ``"base"`` or the name of a *shared stage* (``"sft"``): a method with
    ``shared_stage = True``, which the runner trains once per seed and the budget units its
    ``planned_spend`` names, caches, charges to every cell that starts from it, and hands over
    as :class:`Start`. A shared stage starts from the base model, and its own row is served
    from the same cache. Every other method has ``shared_stage = False``."""

    name: str
    description: str
    Config: ClassVar[type[MethodConfig]]
    starts_from: ClassVar[str]
    shared_stage: ClassVar[bool]

    def train(self, start: Start, ctx: TrainContext, config: MethodConfig) -> Trained:
        """``config`` is an instance of this method's own ``Config``."""
