"""What an eval receives, declares and returns (re-exported by :mod:`bench.api`).

Besides its metrics, an eval may declare what the report reads from it, so that the report
names no eval: its figures (:class:`Plot`, each with an ``id`` a claim can name), its
descriptive metrics (no better direction), the metric it offers for ranking the rows, and
whether its result stores judged pairs for length control (:class:`LengthPairs`). The harness
stores these declarations in every cell record beside ``higher_is_better``
(:func:`declarations`); :func:`declared_figures` lists a matrix's figures without running
anything, for the preflight to check a claim's figure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Literal, Protocol, TypedDict

from bench.api.options import EvalOptions
from bench.api.training import Curves, Trained
from bench.api.world import DataError, EvalData, Policy, World
from bench.budget import Ledger
from bench.errors import UserError

FIGURE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # short enough to type in a claim


class DeclarationError(UserError, ValueError):
    """An eval declares a figure, metric or length-control part that does not fit its own
    declarations (or another eval's figure of the same id); one line naming the fix."""


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


PlotKind = Literal["bars", "slices", "scatter", "sweep", "matrix", "trajectory"]
"""The kinds of figure the report draws (:class:`Plot`)."""


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

    An eval that names no plot gets one ``"bars"`` figure of its headline metrics.

    ``id`` names the figure (``"trade-offs"``): lower-case letters, digits and dashes, at
    most 40; a claim's ``figure`` names it, and plots of several evals that share an id are
    panels of one figure (they must share its title). Left empty, it is the title's slug."""

    title: str
    kind: PlotKind = "bars"
    metrics: tuple[str, ...] = ()
    key: str = ""  # for "matrix"
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:  # frozen: the slug is set once, here
            object.__setattr__(self, "id", figure_id(self.title))
        if not FIGURE_ID.fullmatch(self.id):
            raise DeclarationError(f"figure {self.title!r}: id {self.id!r} is not lower-case "
                                   "letters, digits and dashes (at most 40); give it one")


def figure_id(title: str) -> str:
    """A title's slug, the id of a figure that names none (``"Labeler agreement"`` ->
    ``"labeler-agreement"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    return slug or "figure"


# the figures the report draws for every matrix, whatever its evals: a claim may name them
METRICS_FIGURE = Plot("Every metric by method (mean, 95% interval over seeds)", "bars",
                      id="metrics")
CURVES_FIGURE = Plot("Training curves: every value the cells recorded, per step", "trajectory",
                     id="training-curves")
STANDING_FIGURES = (METRICS_FIGURE, CURVES_FIGURE)


class JudgedPairs(TypedDict):
    """One cell's judged pairs against one reference, as an eval stores them under
    ``extra[LengthPairs.pairs][METRIC]``: per pair, the prompt's index into
    ``extra[LengthPairs.prompt_ids]``, P(the policy's answer wins) (0, 0.5, 1 or a
    probability), and both answers' lengths (words)."""

    prompt: list[int]
    pref: list[float]
    len_method: list[int]
    len_reference: list[int]


@dataclass(frozen=True)
class LengthPairs:
    """An eval that stores every judged pair of a win-rate, so the report can fit length
    control jointly over the matrix's cells (AlpacaEval 2's length model with a prompt term,
    Dubois et al. 2024). Its result's ``extra[pairs]`` maps a raw win-rate metric of this eval
    (``"vs_sft"``) to its :class:`JudgedPairs`; ``extra[prompt_ids]`` lists the prompts'
    identities (strings) that the pairs index, so cells are matched by prompt; the metric
    ``lc_prefix + METRIC`` is the eval's own per-cell length-controlled rate, where it has one."""

    pairs: str = "pairs"
    prompt_ids: str = "prompt_ids"
    lc_prefix: str = "lc_"


def prompt_id(text: str) -> str:
    """A prompt's identity across cells and runs: the first 12 hex digits of its text's
    sha256. Two rows' per-prompt values pair by it."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PerPrompt:
    """The values a metric is the mean of, each with the :func:`prompt_id` of the prompt it
    belongs to: one value per prompt (a TruthfulQA question's MC1), or several sharing an id
    (the judged pairs of one prompt), which then form one cluster. ``mean(values)`` is the
    metric. Stored in every cell, so intervals can generalize over prompts as well as seeds
    and two rows that scored the same prompts can be paired by prompt."""

    prompts: tuple[str, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.values):
            raise ValueError(f"PerPrompt: {len(self.prompts)} prompt ids for "
                             f"{len(self.values)} values; give one id per value")

    @classmethod
    def of(cls, prompts: Iterable[str], values: Iterable[float]) -> PerPrompt:
        """From prompt ids and values (numbers of any kind: numpy's too)."""
        return cls(tuple(prompts), tuple(float(v) for v in values))

    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values) if self.values else math.nan


@dataclass
class EvalResult:
    """Metrics of one eval on one policy.

    ``metrics`` maps names (without the eval prefix; slices as ``mc1.Adversarial``) to floats;
    ``uncertainty`` maps the same names to a standard error; ``n`` is the sample count behind
    the headline metrics; ``rows`` are per-example records shown in the report; ``extra`` is
    any further JSON-able detail (matrices, curves, sources); ``plots`` the figures to draw;
    ``warnings`` what may make a metric mean something other than it seems (the runner adds
    them to the cell's warnings, which the report lists); ``per_prompt`` the values behind
    each headline metric that is a mean over prompts (:class:`PerPrompt`, keyed like
    ``metrics``), which the harness stores in the cell."""

    metrics: dict[str, float]
    uncertainty: dict[str, float] = field(default_factory=dict)
    n: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    per_prompt: dict[str, PerPrompt] = field(default_factory=dict)


class Eval(Protocol):
    """``bounds`` (optional) gives a metric's range (a rate's (0, 1), a kappa's (-1, 1), a
    drop's (0, None): None for an open side), which its slices share: the report keeps the
    metric's intervals inside it.

    Optional declarations for the report (read with their defaults by :func:`declarations`):

    * ``figures``: every :class:`Plot` its results may carry, declared on the class so that
      a claim's figure id is checked before anything runs (:func:`declared_figures`);
    * ``descriptive``: metrics with no better direction (an answer's length): never marked
      best, not sorted best first, their differences not coloured better or worse (their
      value in ``metrics`` is ignored);
    * ``ranking_metric``: the metric the report may rank the rows on (the first one in the
      matrix's eval order is used), e.g. a win-rate against a common reference;
    * ``length_pairs``: where its results store judged pairs for length control."""

    name: str
    description: str
    version: str
    metrics: ClassVar[dict[str, bool]]  # headline metric -> higher_is_better
    bounds: ClassVar[dict[str, tuple[float | None, float | None]]]  # metric -> (low, high)
    Options: ClassVar[type[EvalOptions]]
    figures: ClassVar[tuple[Plot, ...]]
    descriptive: ClassVar[tuple[str, ...]]
    ranking_metric: ClassVar[str | None]
    length_pairs: ClassVar[LengthPairs | None]

    def evaluate(self, policy: Policy, ctx: EvalContext) -> EvalResult: ...


class Declarations(TypedDict):
    """What a cell record stores of an eval's declarations for the report, beside
    ``higher_is_better`` and ``bounds`` (``record["evals"][NAME]``)."""

    descriptive: list[str]
    ranking_metric: str | None
    length_pairs: dict[str, str] | None


def declarations(ev: Eval) -> Declarations:
    """An eval's optional declarations as the harness stores them in each cell record,
    checked against its ``metrics`` (a DeclarationError naming the fix)."""
    name, metrics = getattr(ev, "name", type(ev).__name__), getattr(ev, "metrics", {})
    descriptive = list(getattr(ev, "descriptive", ()))
    ranked = getattr(ev, "ranking_metric", None)
    pairs = getattr(ev, "length_pairs", None)
    for m in descriptive + ([ranked] if ranked else []):
        if m not in metrics:
            raise DeclarationError(f"eval {name}: {m!r} is declared but is not one of its "
                                   f"metrics ({', '.join(metrics)}); declare one of them")
    if ranked in descriptive:
        raise DeclarationError(f"eval {name}: ranking_metric {ranked!r} is descriptive (no "
                               "better direction); rank on a metric with one")
    if pairs is not None and not isinstance(pairs, LengthPairs):
        raise DeclarationError(f"eval {name}: length_pairs must be a LengthPairs, not "
                               f"{type(pairs).__name__}")
    return {"descriptive": descriptive, "ranking_metric": ranked,
            "length_pairs": dataclasses.asdict(pairs) if pairs is not None else None}


def declared_figures(evals: Iterable[Eval]) -> dict[str, Plot]:
    """Every figure a matrix's report can show, by id: the report's own
    (:data:`STANDING_FIGURES`) and each eval's declared ``figures``, in that order, the first
    plot of each id. Pure and static, so a preflight can check a claim's figure before
    anything runs. Two plots of one id with different titles are a DeclarationError."""
    out: dict[str, Plot] = {}
    for ev in [None, *evals]:
        for p in STANDING_FIGURES if ev is None else getattr(ev, "figures", ()):
            have = out.setdefault(p.id, p)
            if have.title != p.title:
                raise DeclarationError(
                    f"figure id {p.id!r} is declared with two titles ({have.title!r} and "
                    f"{p.title!r}, eval {getattr(ev, 'name', '?')}); give the figure one "
                    "title, or the plots different ids")
    return out
