"""The contracts every method, eval and scenario plugs into.

A plugin author needs only this package: this page, and its four short modules
(``options``, ``world``, ``training``, ``evaluation``), each re-exported here. The shapes:

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

Text crosses every boundary in one shape: a *prompt* is the full text given to the model,
already in its chat template, and a *completion* is the text that follows it; whitespace belongs
to the completion. Every prompt a scenario hands over (training prompts, demonstrations,
preference rows, ``EvalData.prompts``) is in that form: pass it on as it is, never through
``Policy.format_chat`` again (that is for an eval's raw dataset text, ``EvalData.items``).

Beyond these contracts a method may use documented helpers with typed signatures:
``methods.trl_train`` (train a stage with any TRL trainer: :func:`train_with_trl`, the
``Schedule`` config fields), ``methods.feedback`` (prompts, samples and labels through the
ledger, the shared comparison set), ``methods.common`` (micro-batches, warm-ups, a metered
trainer), ``methods.lora``, ``bench.seeding.derive_seed`` and ``bench.stats``; docs/plugins.md
lists each with what it charges.
"""

from bench.errors import UserError
from bench.api.options import (
    EvalOptions, JSON, MethodConfig, OPTIONS_CONFIG, ScenarioOptions)
from bench.api.world import (
    AttributeParser, DataError, EvalData, Judge, Labeler, Policy, PreferenceSource, Rater,
    RewardFn, Scenario, SelectingPolicy, ToxicityScorer, TrainView, World)
from bench.api.training import (
    Curves, Method, NonFiniteError, Stages, Start, Tracking, TrainContext, TrainablePolicy,
    Trained)
from bench.api.evaluation import (
    STANDING_FIGURES, DeclarationError, Eval, EvalContext, EvalResult, JudgedPairs,
    LengthPairs, PerPrompt, Plot, declarations, declared_figures, prompt_id)

__all__ = [
    "UserError",
    "STANDING_FIGURES",
    "DeclarationError",
    "JudgedPairs",
    "LengthPairs",
    "PerPrompt",
    "prompt_id",
    "declarations",
    "declared_figures",
    "AttributeParser",
    "Curves",
    "DataError",
    "Eval",
    "EvalContext",
    "EvalData",
    "EvalOptions",
    "EvalResult",
    "JSON",
    "Judge",
    "Labeler",
    "Method",
    "MethodConfig",
    "NonFiniteError",
    "OPTIONS_CONFIG",
    "Plot",
    "Policy",
    "PreferenceSource",
    "Rater",
    "RewardFn",
    "Scenario",
    "ScenarioOptions",
    "SelectingPolicy",
    "Stages",
    "Start",
    "ToxicityScorer",
    "Tracking",
    "TrainContext",
    "TrainView",
    "TrainablePolicy",
    "Trained",
    "World",
]
