"""The contracts every method, eval and scenario plugs into.

A plugin author needs only this module. The shapes:

* A :class:`Policy` turns prompts into text and scores text. Every eval goes through its two
  batched calls, ``generate`` and ``logprob``; methods return one.
* A :class:`Labeler` (human panel) or :class:`Judge` (AI judge, gold judge, reward model)
  answers ``prefer(prompts, a, b) -> P(a preferred)``. Labelers charge the budget ledger.
* A :class:`Method` has a flat pydantic ``Config`` with paper defaults and
  ``train(base, ctx) -> Policy``.
* An :class:`Eval` declares ``version`` and ``metrics`` (name -> higher_is_better) and returns an
  :class:`EvalResult` from ``evaluate(policy, ctx)``.
* A :class:`Scenario` builds a :class:`World`: base model, demonstrations, prompt pools, the
  labeler panel, the AI-judge factory, the gold judge (evaluation only) and eval datasets.

Text crosses every boundary in one shape: a *prompt* is the full text given to the model
(already chat-formatted where the model uses a chat template, see ``Policy.format_chat``) and a
*completion* is the text that follows it; whitespace belongs to the completion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from bench.budget import Ledger


class MethodConfig(BaseModel):
    """Base for a method's flat config: unknown keys are rejected, every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def planned_spend(self, budget: dict[str, float | None]) -> dict[str, tuple[float, str]]:
        """What training will charge each hard-capped unit under ``budget`` (the matrix's
        ``[budget]`` table, None = uncapped), with a short account of where it goes. The runner
        refuses a matrix whose cells would overspend before it starts any of them, instead of
        failing a cell after hours of work; the ledger still enforces every charge as it
        happens. Raise ValueError, naming the fix, for a budget this config cannot run under.
        The default declares nothing."""
        return {}


class EvalOptions(BaseModel):
    """Base for an eval's options (the matrix's ``[eval.NAME]`` table), validated like configs."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------------- policies


@runtime_checkable
class Policy(Protocol):
    """A language model as the harness sees it. Lists in, lists out, same length and order."""

    name: str

    def format_chat(self, user_messages: list[str]) -> list[str]:
        """Wrap each user message in the model's chat template, ready for ``generate``."""

    def generate(
        self, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
        seed: int = 0,
    ) -> list[str]:
        """Sample one completion per prompt (temperature 0 = greedy); stops at EOS."""

    def logprob(self, prompts: list[str], completions: list[str]) -> list[float]:
        """Sum of log p(completion tokens | prompt), natural log, one float per pair."""


@runtime_checkable
class Judge(Protocol):
    """Anything that compares two completions of the same prompt."""

    def prefer(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        """P(a preferred over b) per pair; 0.5 is a tie."""


@runtime_checkable
class Labeler(Judge, Protocol):
    """A (simulated) human labeler panel. Every call charges the ledger it was bound to."""

    def rank(self, prompt: str, responses: list[str]) -> list[int]:
        """Indices of ``responses`` best first. Charges K(K-1)/2 comparisons."""


RewardFn = Callable[[list[str], list[str]], list[float]]
"""Scores completions: ``reward(prompts, completions) -> list[float]`` (higher is better)."""


# --------------------------------------------------------------------------- scenarios


@dataclass
class TruthfulQAItem:
    """One multiple-choice question, normalized from any source (TruthfulQA's own schema)."""

    question: str
    mc1_choices: list[str]  # best answer first
    mc2_choices: list[str]
    mc2_labels: list[int]  # 1 = true answer
    type: str = ""  # "Adversarial" / "Non-Adversarial" (micro-world adds "Unknown")
    category: str = ""


@dataclass
class EvalData:
    """Evaluation datasets a scenario supplies. Prompts are raw user messages."""

    truthfulqa: list[TruthfulQAItem]
    truthfulqa_source: dict[str, Any]  # {"name", "sha256", "n"}
    truthfulqa_primer: str  # which primer: "lm-eval" (the six-shot QA primer) or "" (none)
    truthfulqa_template: str  # "chat" (the model's chat template) or "qa_primer" (lm-eval's)
    toxicity_prompts: list[str]
    win_rate_prompts: list[str]
    agreement_prompts: list[str]


class AttributeParser(Protocol):
    def __call__(self, prompt: str, response: str) -> dict[str, Any]: ...


class ToxicityScorer(Protocol):
    name: str

    def score(self, texts: list[str]) -> list[float]:
        """Toxicity in [0, 1] per text."""


@dataclass
class World:
    """What a scenario hands the harness. Methods see it only through :class:`TrainView`."""

    key: str  # content hash: changes whenever anything that can move a number changes
    base_model: Path
    # knobs and identities, recorded in every result and hashed into cell keys; anything
    # cosmetic (timings) goes under describe["timing"], which keys leave out
    describe: dict[str, Any]
    train_prompts: list[str]
    demonstrations: Callable[[int, int], list[dict[str, str]]]  # (n, seed) -> prompt/completion
    make_panel: Callable[[Ledger, int], Labeler]  # (ledger, seed) -> labeler bound to ledger
    make_ai_judge: Callable[[Policy, list[str], Ledger], Judge]  # (model, principles, ledger)
    gold_judge: Judge | None  # evaluation only
    gold_reward: RewardFn | None  # evaluation/monitoring only
    toxicity_scorer: ToxicityScorer
    attributes: AttributeParser | None
    eval_data: EvalData
    load_policy: Callable[[Path], Policy]


class Scenario(Protocol):
    name: str
    description: str
    Options: ClassVar[type[BaseModel]]

    def build(self, options: BaseModel, cache_dir: Path, progress: bool = True) -> World: ...


# --------------------------------------------------------------------------- contexts


class NonFiniteError(RuntimeError):
    """A loss, reward or gradient became NaN/Inf. Carries the step for the cell's record."""

    def __init__(self, what: str, step: int):
        super().__init__(f"non-finite {what} at step {step}")
        self.what, self.step = what, step


@dataclass
class TrainView:
    """The part of a World a method may touch. The gold judge is deliberately absent."""

    train_prompts: list[str]
    demonstrations: Callable[[int, int], list[dict[str, str]]]
    make_panel: Callable[[Ledger, int], Labeler]
    make_ai_judge: Callable[[Policy, list[str], Ledger], Judge]
    load_policy: Callable[[Path], Policy]
    describe: dict[str, Any]


@dataclass
class TrainContext:
    """Everything ``Method.train`` receives besides the base policy."""

    scenario: TrainView
    ledger: Ledger
    seed: int
    cell_dir: Path
    log: logging.Logger
    stages: Any  # bench.runner.Stages: shared cached stages (sft model, comparison sets)
    progress: bool = True
    device: str = "cpu"  # the matrix's device switch, resolved ("cpu" or "cuda")
    artifacts: dict[str, Any] = field(default_factory=dict)  # handed to evals (in memory)
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # stored in result
    _gold_monitor: Callable[[list[str], list[str]], float] | None = None

    def monitor_gold(self, curve: str, step: int, prompts: list[str], completions: list[str],
                     **values: float) -> None:
        """Append a point to ``curves[curve]``: the given values, plus the gold reward of these
        samples when the scenario has one. Write-only: the method never sees the gold value."""
        point = {"step": float(step), **{k: float(v) for k, v in values.items()}}
        if self._gold_monitor is not None:
            point["gold_reward"] = float(self._gold_monitor(prompts, completions))
        self.curves.setdefault(curve, []).append(point)


@dataclass
class EvalContext:
    """Everything ``Eval.evaluate`` receives besides the policy under test."""

    world: World
    seed: int
    method: str
    references: dict[str, Policy]  # "sft", "base"
    artifacts: dict[str, Any]  # from the method: reward_fn, ai_judge, comparisons, ...
    curves: dict[str, list[dict[str, float]]]
    options: dict[str, Any]  # this eval's options from the matrix
    ledger: Ledger  # evaluation spend is recorded separately from the method's budget
    progress: bool = True


# --------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """Metrics of one eval on one policy.

    ``metrics`` maps names (without the eval prefix; slices as ``mc1.Adversarial``) to floats;
    ``uncertainty`` maps the same names to a standard error; ``n`` is the sample count behind
    the headline metrics; ``rows`` are per-example records shown in the report; ``extra`` is
    any further JSON-able detail (matrices, curves, sources)."""

    metrics: dict[str, float]
    uncertainty: dict[str, float] = field(default_factory=dict)
    n: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Method(Protocol):
    """An alignment method. ``Config`` is a flat :class:`MethodConfig` with paper defaults."""

    name: str
    description: str
    Config: ClassVar[type[MethodConfig]]

    def train(self, base: Policy, ctx: TrainContext, config: MethodConfig) -> Policy: ...


class Eval(Protocol):
    name: str
    description: str
    version: str
    metrics: ClassVar[dict[str, bool]]  # headline metric -> higher_is_better
    Options: ClassVar[type[EvalOptions]]  # read ctx.options through it

    def evaluate(self, policy: Policy, ctx: EvalContext) -> EvalResult: ...
