"""What an eval receives, declares and returns (re-exported by :mod:`bench.api`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from bench.api.options import EvalOptions
from bench.api.training import Curves, Trained
from bench.api.world import DataError, EvalData, Policy, World
from bench.budget import Ledger


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
