"""The contracts every method, eval and scenario plugs into.

A plugin author needs only this module. The shapes:

* A :class:`Policy` turns prompts into text and scores text. Every eval goes through its two
  batched calls, ``generate`` and ``logprob``; methods return one.
* A :class:`Labeler` (human panel) or :class:`Judge` (AI judge, gold judge, reward model)
  answers ``prefer(prompts, a, b) -> P(a preferred)``. Labelers charge the budget ledger.
* A :class:`Method` has a flat pydantic ``Config`` with paper defaults, declares what it
  ``starts_from`` (the base model or a shared stage such as SFT), and implements
  ``train(start, ctx, config) -> Trained``: the runner hands it a :class:`Start` (a frozen
  reference and a trainable copy on demand), a :class:`TrainContext` (scenario view, budget
  ledger, seed, :class:`Stages`), and its validated config.
* An :class:`Eval` declares ``version`` and ``metrics`` (name -> higher_is_better) and returns an
  :class:`EvalResult` (metrics, standard errors, rows, the :class:`Plot` figures the report
  draws) from ``evaluate(policy, ctx)``; the :class:`EvalContext` carries the method's
  :class:`Trained` result, the references ("base", "sft") and the scenario's data for it.
* A :class:`Scenario` builds a :class:`World`: base model, demonstrations, prompt pools, the
  labeler panel, the AI-judge factory, the gold judge (evaluation only) and each eval's data
  (:class:`EvalData`, keyed by eval name).

Text crosses every boundary in one shape: a *prompt* is the full text given to the model
(already chat-formatted where the model uses a chat template, see ``Policy.format_chat``) and a
*completion* is the text that follows it; whitespace belongs to the completion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from bench import meter
from bench.budget import Ledger, charging

if TYPE_CHECKING:  # annotations only: importing the contracts loads no torch
    import torch
    from transformers import PreTrainedTokenizerBase


# every option table a user writes (a method's config, an eval's options, a scenario's options):
# unknown keys refused, no coercion, and every float finite; a field that means infinity takes
# None, and one that must accept NaN or inf says so itself (Field(allow_inf_nan=True))
OPTIONS_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class MethodConfig(BaseModel):
    """Base for a method's flat config: unknown keys are rejected, every field has a default.

    ``profiles`` holds defaults for a kind of model, by name: a scenario that declares a
    ``profile`` (the real scenario's is ``"real"``: pretrained models of 0.1-1B parameters)
    has its matrices pick up that profile's values wherever their ``[method.NAME]`` table is
    silent. The field defaults themselves suit the micro-world's tiny models."""

    model_config = OPTIONS_CONFIG
    profiles: ClassVar[dict[str, dict[str, JSON]]] = {}

    def planned_spend(self, budget: dict[str, float | None]) -> dict[str, tuple[float, str]]:
        """What training will charge each hard-capped unit under ``budget`` (the matrix's
        ``[budget]`` table, None = uncapped), with a short account of where it goes. The runner
        refuses a matrix whose cells would overspend before it starts any of them, instead of
        failing a cell after hours of work; the ledger still enforces every charge as it
        happens. Raise ValueError, naming the fix, for a budget this config cannot run under.
        The default declares nothing."""
        return {}

    def spends(self) -> frozenset[str] | None:
        """The hard budget units this config's cells can spend, so that a budget sweep over any
        other unit leaves its cells alone: they run once and appear once (the compute caps
        bound every training step and always count). None, the default, when any unit may
        matter; the empty set for a method that trains nothing (the base model), which no unit
        touches. The ledger still charges and caps every unit as it is spent."""
        return None

    def planned_tokens(self, budget: dict[str, float | None],
                       demonstrations: Callable[[int, int], list[dict[str, str]]], seed: int,
                       count: Callable[[str], int]) -> tuple[int, str] | None:
        """A lower bound on the training tokens this config will process under ``budget``
        when that is known before training (a stage that trains on demonstrations:
        ``count(text)`` tokenizes), with a short account; None when it is not. The runner
        refuses a train_tokens or flops cap below it before any cell starts."""
        return None

    def check_world(self, world: TrainView) -> None:
        """Refuse, with a ValueError naming the fix, a setting the built world cannot serve
        (a judge it does not have, a prompt family none of its prompts belong to): the runner
        calls it once the world is built, before any cell trains. The default accepts all."""


class EvalOptions(BaseModel):
    """Base for an eval's options (the matrix's ``[eval.NAME]`` table), validated like configs."""

    model_config = OPTIONS_CONFIG

    def needs_scenario(self) -> bool:
        """Whether ``alignbench eval`` must build a scenario for these options (an eval whose
        options name its own data, like TruthfulQA's ``data``, may run without one)."""
        return True


class ScenarioOptions(BaseModel):
    """Base for a scenario's options (the matrix's ``[scenario.options]`` table), validated as
    strictly as configs, before anything is built or created: each numeric field declares its
    range (``Field(ge=...)``), and a constraint between fields is a model validator. The
    matrix validates them as JSON, so a TOML array fills a tuple option."""

    model_config = OPTIONS_CONFIG


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


@runtime_checkable
class Rater(Protocol):
    """A labeler panel that also gives binary ratings (is this answer acceptable?): KTO's
    direct source. Each rating charges one ``ratings`` unit of the ledger it was bound to."""

    def rate(self, prompts: list[str], responses: list[str]) -> list[bool]:
        """One labeler's verdict per response: True when acceptable."""


@runtime_checkable
class SelectingPolicy(Policy, Protocol):
    """A policy that serves each answer by sampling ``n`` responses from ``base`` and returning
    one of them (best-of-n). Its probability of a given answer has no closed form, so its
    ``logprob`` is the base's (a multiple-choice eval scores what the base believes) and the
    KL eval reports the analytic bound to the base, log n - (n-1)/n (Beirami et al. 2024),
    instead of a sampled estimate."""

    n: int
    base: Policy


RewardFn = Callable[[list[str], list[str]], list[float]]
"""Scores completions: ``reward(prompts, completions) -> list[float]`` (higher is better)."""


# --------------------------------------------------------------------------- scenarios


class DataError(ValueError):
    """An eval's or scenario's input data is unusable (a missing column, an empty file). The
    message is one line naming the file and the fix; the CLI prints it and exits 2."""


@dataclass(frozen=True)
class EvalData:
    """What a scenario supplies one eval (``World.eval_data[eval_name]``). Prompts are raw user
    messages; ``items`` are dataset records in the eval's own type (TruthfulQA's questions, say);
    ``source`` identifies where they came from (name, sha256, n: recorded in every result);
    ``hints`` are the scenario's choices for this eval (e.g. TruthfulQA's prompt template)."""

    prompts: list[str] = field(default_factory=list)
    items: list[object] = field(default_factory=list)
    source: dict[str, str | int] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)


class AttributeParser(Protocol):
    """What a scenario knows about a response (truth, style, toxicity...): for the report's
    sample browser and per-kind slices. JSON-able values."""

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
    eval_data: dict[str, EvalData]  # eval name -> its data; an eval absent here has none
    load_policy: Callable[[Path], TrainablePolicy]
    # further frozen models the scenario pretrains besides the base, by name (the micro-world's
    # "large_base", a wider model on the same corpus): evals may compare with them
    # (``EvalContext.references``) and a method may serve one (methods/large_base.py)
    reference_models: dict[str, Path] = field(default_factory=dict)
    # an AI judge that scores each answer by the judge model's own beliefs under each
    # principle (the micro-world's LikelihoodJudge), beside make_ai_judge's pairwise question;
    # None where the scenario has none
    make_likelihood_judge: Callable[[Policy, list[str], Ledger], Judge] | None = None
    # the user's preference data, when the scenario has some: the methods that consume
    # comparisons draw from it instead of asking the panel
    preferences: PreferenceSource | None = None
    # False when no online labeler exists (preference data alone): make_panel then raises
    # DataError, and methods that label their own samples refuse in their preflight
    has_labeler: bool = True
    # True when the evaluation judge is the online labeler itself (a matrix that says so):
    # win-rates are then the proxy's, not gold's, and say so
    judge_is_labeler: bool = False
    # budget unit -> rows the scenario's data holds for it ("demonstrations", "comparisons",
    # "ratings"): a budget larger than the data is refused before any cell trains
    data_limits: dict[str, int] = field(default_factory=dict)
    # the scenario options a worker on another node builds this same world from (the user's
    # files replaced by their snapshots in the shared cache); None: the matrix's own options
    portable_options: dict[str, JSON] | None = None


@runtime_checkable
class PreferenceSource(Protocol):
    """A preference dataset the scenario holds (the user's ``preferences``): the pairs (or, for
    an unpaired set, the rated completions) methods may draw under the ``comparisons`` (or
    ``ratings``) budget. Rows are text: ``prompt`` is the full text given to the model,
    ``chosen``/``rejected`` (``completion``/``label`` when unpaired) follow it."""

    paired: bool  # prompt/chosen/rejected rows; False: prompt/completion/label (KTO's format)
    key: str  # content key of the rows methods may draw from
    size: int  # how many rows methods may draw from

    def draw(self, n: int, seed: int) -> list[dict[str, str | bool]]:
        """``n`` rows without replacement, in a seeded order: the same ``(n, seed)`` gives the
        same rows to every method, a larger ``n`` extends a smaller one's. DataError when
        ``n`` exceeds ``size``."""


class Scenario(Protocol):
    """``profile`` (optional) names the method defaults its matrices pick up
    (``MethodConfig.profiles``); a scenario without one uses the configs' own defaults."""

    name: str
    description: str
    Options: ClassVar[type[BaseModel]]

    def build(self, options: BaseModel, cache_dir: Path, progress: bool = True) -> World: ...


# --------------------------------------------------------------------------- training


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


JSON = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
"""Plain JSON values: what a cached stage stores."""


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


@dataclass
class TrainView:
    """The part of a World a method may touch. The gold judge is deliberately absent."""

    train_prompts: list[str]
    demonstrations: Callable[[int, int], list[dict[str, str]]]
    make_panel: Callable[[Ledger, int], Labeler]
    make_ai_judge: Callable[[Policy, list[str], Ledger], Judge]
    load_policy: Callable[[Path], TrainablePolicy]
    describe: dict[str, Any]
    reference_models: dict[str, Path] = field(default_factory=dict)  # World.reference_models
    make_likelihood_judge: Callable[[Policy, list[str], Ledger], Judge] | None = None
    preferences: PreferenceSource | None = None  # World.preferences
    has_labeler: bool = True  # World.has_labeler


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
    """Everything ``Method.train`` receives besides its start and config."""

    scenario: TrainView
    ledger: Ledger
    seed: int
    cell_dir: Path
    log: logging.Logger
    stages: Stages
    progress: bool = True
    device: str = "cpu"  # the matrix's device switch, resolved ("cpu" or "cuda")
    curves: Curves = field(default_factory=dict)  # stored in the result
    tracking: Tracking = field(default_factory=Tracking)  # off unless the matrix asks
    _gold_scores: RewardFn | None = None  # the gold reward per sample, for monitors only

    def monitor_gold(self, curve: str, step: int, prompts: list[str], completions: list[str],
                     **values: float) -> None:
        """Append a point to ``curves[curve]``: the given values, plus the gold reward of these
        samples when the scenario has one. Write-only: the method never sees the gold value."""
        point = {"step": float(step), **{k: float(v) for k, v in values.items()}}
        if self._gold_scores is not None:
            import numpy as np  # the contracts module itself loads no numerics

            with meter.phase("gold monitor", measurement=True):  # measurement, not training
                point["gold_reward"] = float(np.mean(self._gold_scores(prompts, completions)))
        self.curves.setdefault(curve, []).append(point)

    def monitor_reward_model(self, curve: str, step: int, reward_fn: RewardFn, prompts: list[str],
                             samplers: dict[str, Policy], *, seed: int,
                             max_new_tokens: int) -> dict[str, float] | None:
        """Append a point to ``curves[curve]``: for each named sampler (e.g. the start and the
        policy being steered), two completions of each prompt, and ``rm_vs_gold.NAME``, the
        share of those pairs ``reward_fn`` orders as the gold reward does (pairs either one
        ties left out), with ``pairs.NAME``, how many counted (Gao et al. 2022's proxy against
        gold, round by round). Measurement: its samples and scores are charged to no budget.
        Returns the point (None, and nothing recorded, where the scenario has no gold reward)."""
        if self._gold_scores is None:
            return None
        point = {"step": float(step)}  # the round, for RLHF's rounds
        with meter.phase("gold monitor", measurement=True), charging(Ledger(caps={})):
            for name, policy in samplers.items():
                a, b = (policy.generate(prompts, max_new_tokens=max_new_tokens, temperature=1.0,
                                        seed=seed + i) for i in (0, 1))
                ra, rb = reward_fn(prompts, a), reward_fn(prompts, b)
                ga, gb = self._gold_scores(prompts, a), self._gold_scores(prompts, b)
                hits = [(x > y) == (u > v) for x, y, u, v in zip(ra, rb, ga, gb)
                        if x != y and u != v]
                point[f"rm_vs_gold.{name}"] = sum(hits) / len(hits) if hits else float("nan")
                point[f"pairs.{name}"] = float(len(hits))
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


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalContext:
    """Everything ``Eval.evaluate`` receives besides the policy under test."""

    world: World | None  # None when ``alignbench eval`` runs on data alone
    seed: int
    references: dict[str, Policy]  # "base", each shared stage ("sft"), World.reference_models
    trained: Trained | None  # None for an external model (``alignbench eval``)
    curves: Curves
    options: EvalOptions  # this eval's options, validated
    ledger: Ledger  # evaluation spend is recorded separately from the method's budget
    data: EvalData | None = None  # the scenario's data for this eval
    progress: bool = True

    def prompts(self, eval_name: str) -> list[str]:
        """The scenario's prompts for this eval, or a DataError naming what is missing."""
        if self.data is None or not self.data.prompts:
            raise DataError(f"eval {eval_name}: the scenario supplies no prompts for it; use a "
                            f"scenario that does or drop {eval_name} from evals")
        return self.data.prompts


@dataclass(frozen=True)
class Plot:
    """A figure an eval asks the report to draw from stored results, so a plugin eval's
    figures appear without editing reports/. Metric names are full (``"win_rate.vs_sft"``),
    so a figure may relate two evals.

    * ``"bars"``: ``metrics`` by method (mean and interval over seeds), one panel each;
    * ``"slices"``: every metric starting with ``metrics[0]`` (``"truthfulqa.mc1."``), grouped
      bars by method;
    * ``"scatter"``: ``metrics = (x, y)``, one point per cell, colored by method;
    * ``"sweep"``: ``metrics[0]`` against each swept budget unit, one line per method;
    * ``"matrix"``: the square matrix stored under ``extra[key]`` of this eval's result;
    * ``"trajectory"``: ``metrics = (x, y, ...)`` name values in the cells' training curves;
      each y against x along every curve that records both.

    An eval that names no plot gets one ``"bars"`` figure of its headline metrics."""

    title: str
    kind: Literal["bars", "slices", "scatter", "sweep", "matrix", "trajectory"] = "bars"
    metrics: tuple[str, ...] = ()
    key: str = ""  # for "matrix"


@dataclass
class EvalResult:
    """Metrics of one eval on one policy.

    ``metrics`` maps names (without the eval prefix; slices as ``mc1.Adversarial``) to floats;
    ``uncertainty`` maps the same names to a standard error; ``n`` is the sample count behind
    the headline metrics; ``rows`` are per-example records shown in the report; ``extra`` is
    any further JSON-able detail (matrices, curves, sources); ``plots`` the figures to draw;
    ``warnings`` what may make a metric mean something other than it seems (the runner adds
    them to the cell's warnings, which the report lists)."""

    metrics: dict[str, float]
    uncertainty: dict[str, float] = field(default_factory=dict)
    n: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Eval(Protocol):
    """``bounds`` (optional) gives a metric's range (a rate's (0, 1), a kappa's (-1, 1), a
    drop's (0, None): None for an open side), which its slices share: the report keeps the
    metric's intervals inside it."""

    name: str
    description: str
    version: str
    metrics: ClassVar[dict[str, bool]]  # headline metric -> higher_is_better
    bounds: ClassVar[dict[str, tuple[float | None, float | None]]]  # metric -> (low, high)
    Options: ClassVar[type[EvalOptions]]

    def evaluate(self, policy: Policy, ctx: EvalContext) -> EvalResult: ...
