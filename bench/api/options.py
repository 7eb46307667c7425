"""Option tables: a method's config, an eval's options, a scenario's options (re-exported by
:mod:`bench.api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from bench.api.world import TrainView, World


JSON = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
"""Plain JSON values: what a cached stage stores."""


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

    def check_world(self, world: World) -> None:
        """Refuse, with a ValueError naming the fix, a setting the built world cannot serve
        (a reference model it does not build, data it lacks): the preflight calls it once the
        world is built, before any cell trains, so the matrix fails before its first training
        instead of in every cell's evaluation. The default accepts all."""


class ScenarioOptions(BaseModel):
    """Base for a scenario's options (the matrix's ``[scenario.options]`` table), validated as
    strictly as configs, before anything is built or created: each numeric field declares its
    range (``Field(ge=...)``), and a constraint between fields is a model validator. The
    matrix validates them as JSON, so a TOML array fills a tuple option."""

    model_config = OPTIONS_CONFIG
