"""Policies, judges and the world a scenario builds (re-exported by :mod:`bench.api`).

Prompts arrive in one form. A *prompt* is the full text given to the model: the user's message
already in the model's chat template (what ``Policy.format_chat`` makes of it), ready for
``generate`` and ``logprob``. Every prompt a scenario hands over is in that form:
``World.train_prompts``, the ``prompt`` of each demonstration and preference row, and
``EvalData.prompts``. Methods and evals pass them on as they are and never wrap them again (a
second template around a prompt is a different, wrong prompt, and nothing would fail). Only
dataset records (``EvalData.items``, TruthfulQA's questions) hold raw user messages, which the
eval formats itself, as ``EvalData.hints`` say. A *completion* is the text that follows a
prompt; whitespace belongs to the completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from bench.budget import Ledger
from bench.errors import UserError

if TYPE_CHECKING:  # annotations only: importing the contracts loads no torch
    from bench.api.options import JSON
    from bench.api.training import TrainablePolicy


@runtime_checkable
class Policy(Protocol):
    """A language model as the harness sees it. Lists in, lists out, same length and order."""

    name: str

    def format_chat(self, user_messages: list[str]) -> list[str]:
        """Wrap each raw user message in the model's chat template: the prompt form every
        scenario hands over already. Only for raw text of an eval's own (a dataset record's
        question); never for a prompt the scenario gave."""

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


class DataError(UserError, ValueError):
    """An eval's or scenario's input data is unusable (a missing column, an empty file). The
    message is one line naming the file and the fix; the CLI prints it and exits 2."""


@dataclass(frozen=True)
class EvalData:
    """What a scenario supplies one eval (``World.eval_data[eval_name]``). ``prompts`` are full
    prompts, already chat-formatted (the module's one form: pass them to ``generate`` as they
    are); ``items`` are dataset records in the eval's own type (TruthfulQA's questions, say,
    raw user messages that the eval formats as ``hints`` say);
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


@dataclass(kw_only=True)
class TrainView:
    """The part of a :class:`World` a method may touch (``TrainContext.scenario``): a World is
    a TrainView plus what only evaluation may see, and :meth:`World.train_view` hands methods
    these fields alone. The gold judge, the gold reward, the eval data and the attribute parser
    are deliberately absent."""

    train_prompts: list[str]  # prompts (chat-formatted) that methods sample and label on
    demonstrations: Callable[[int, int], list[dict[str, str]]]  # (n, seed) -> prompt/completion
    make_panel: Callable[[Ledger, int], Labeler]  # (ledger, seed) -> labeler bound to ledger
    make_ai_judge: Callable[[Policy, list[str], Ledger], Judge]  # (model, principles, ledger)
    load_policy: Callable[[Path], TrainablePolicy]  # a saved model folder -> a policy
    # knobs and identities, recorded in every result and hashed into cell keys; anything
    # cosmetic (timings) goes under describe["timing"], which keys leave out
    describe: dict[str, Any]
    # further frozen models the scenario pretrains besides the base, by name (the micro-world's
    # "large_base", a wider model on the same corpus): evals may compare with them
    # (``EvalContext.references``) and a method may serve one (``Stages.scenario_model``)
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


@dataclass(kw_only=True)
class World(TrainView):
    """What a scenario hands the harness: everything a method may see (:class:`TrainView`'s
    fields) and what only evaluation may. Methods see it only through :meth:`train_view`."""

    key: str  # content hash: changes whenever anything that can move a number changes
    base_model: Path
    gold_judge: Judge | None  # evaluation only
    gold_reward: RewardFn | None  # evaluation/monitoring only
    toxicity_scorer: ToxicityScorer
    attributes: AttributeParser | None
    eval_data: dict[str, EvalData]  # eval name -> its data; an eval absent here has none
    # True when the evaluation judge is the online labeler itself (a matrix that says so):
    # win-rates are then the proxy's, not gold's, and say so
    judge_is_labeler: bool = False
    # budget unit -> rows the scenario's data holds for it ("demonstrations", "comparisons",
    # "ratings"): a budget larger than the data is refused before any cell trains
    data_limits: dict[str, int] = field(default_factory=dict)
    # the scenario options a worker on another node builds this same world from (the user's
    # files replaced by their snapshots in the shared cache); None: the matrix's own options
    portable_options: dict[str, JSON] | None = None

    def train_view(self) -> TrainView:
        """The world as training sees it: a :class:`TrainView` of this world's values for
        TrainView's fields (its reference models a copy), nothing else."""
        shared = {f.name: getattr(self, f.name) for f in fields(TrainView)}
        return TrainView(**{**shared, "reference_models": dict(self.reference_models)})


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
