"""One way to train a stage with a TRL trainer: every TRL-backed method (sft, the reward model,
dpo, kto, simpo, orpo, rloo and grpo) calls :func:`train_with_trl`, which builds the stage's
arguments (:func:`methods.common.trainer_args`), guards every step against non-finite numbers,
charges the cell's ledger, trains, folds LoRA adapters back into the weights and releases what
the trainer held. A plugin's method trains the same way:

    from trl import SFTConfig, SFTTrainer
    from methods.trl_train import schedule, train_with_trl

    policy.model = train_with_trl(SFTConfig, SFTTrainer, policy.model, rows, ctx, "my_stage",
                                  cfg, tokenizer=policy.tokenizer, learning_rate=cfg.lr,
                                  **schedule(cfg, len(rows), cfg.batch_size, cfg.epochs))

:class:`Schedule` is the config fields of a learning-rate schedule with a warm-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field, field_validator

from bench.api import MethodConfig, TrainablePolicy, TrainContext
from bench.models import n_params
from methods.common import FiniteGuard, metered, timed, to_cell_log, trainer_args, warmup
from methods.lora import LoRAOptions, lora_config, merged

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback


def scheduler_name(name: str) -> str:
    """``name`` if transformers has a learning-rate schedule of that name (its
    ``SchedulerType``: linear, cosine, constant, ...), else a ValueError naming them."""
    from transformers.trainer_utils import SchedulerType
    known = [s.value for s in SchedulerType]
    if name not in known:
        raise ValueError(f"{name!r} is no learning-rate schedule of transformers; one of "
                         f"{', '.join(known)}")
    return name


class Schedule(MethodConfig):
    """A TRL stage's learning rate: a linear warm-up from 0 over the first ``warmup_ratio`` of
    the steps, then ``lr_scheduler_type`` down from the peak."""

    lr_scheduler_type: str = Field("cosine", description="learning-rate schedule after the "
                                   "warm-up, a transformers SchedulerType (cosine, linear, "
                                   "constant, ...)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="fraction of the steps the "
                                "learning rate warms up over, linearly from 0 (none in a "
                                "one-step run)")

    # named apart from the reward model's check (RewardModelConfig): pydantic keeps one
    # validator per name, so a config with both (rsft's) would silently drop one
    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_schedule(cls, v: str) -> str:
        return scheduler_name(v)


def schedule(cfg: Schedule, n_examples: int, batch_size: int, epochs: float
             ) -> dict[str, Any]:
    """A TRL config's schedule arguments from ``cfg``'s fields for a run over ``n_examples`` in
    batches of ``batch_size`` for ``epochs`` (the warm-up as :func:`methods.common.warmup`
    gives it: none in a one-step run)."""
    return {"lr_scheduler_type": cfg.lr_scheduler_type,
            "warmup_steps": warmup(cfg.warmup_ratio, n_examples, batch_size, epochs)}


def train_with_trl(config_cls: type[Any], trainer_cls: type[Trainer], model: PreTrainedModel,
                   data: Dataset | list[dict[str, Any]], ctx: TrainContext, stage: str,
                   cfg: LoRAOptions, *, tokenizer: PreTrainedTokenizerBase,
                   task_type: str = "CAUSAL_LM", reference: torch.nn.Module | None = None,
                   trainer_kw: dict[str, Any] | None = None,
                   charge: Callable[[Trainer], None] | None = None,
                   forward_only: Callable[[dict[str, Any]], int] | None = None,
                   callbacks: Sequence[TrainerCallback] = (), **args: Any) -> PreTrainedModel:
    """One stage of a cell trained by ``trainer_cls`` (a TRL trainer) on ``data`` (rows, or a
    ``datasets.Dataset``), returning the trained model in eval mode with any adapters merged.

    ``config_cls`` is the trainer's config class, built by :func:`methods.common.trainer_args`
    for ``stage`` (which names the stage's trainer folder and curve) from ``args`` (learning
    rate, epochs, batch sizes, :func:`schedule`, the loss's own settings), with activation
    checkpointing as ``cfg`` says. With ``cfg.lora`` the trainer trains fresh adapters
    (``task_type``: peft's, "SEQ_CLS" for a reward model) that are merged when it ends.
    ``trainer_kw`` goes to the trainer itself (a ``ref_model``, ``reward_funcs``), and
    ``callbacks`` join the guard that stops the run at the first non-finite loss or weight.

    Compute is charged to ``ctx.ledger`` before each step runs: by default every training
    step's tokens and FLOPs (``model``'s parameters, plus ``reference``'s forward pass when
    the loss has a reference, plus ``forward_only``'s count of a batch's tokens both read
    without training on them), with the trainer's logged values as the curve ``stage``
    (:func:`methods.common.metered`); ``charge``, when given, installs the trainer's charging
    itself (online RL charges each generation batch) and the stage keeps no logged curve.
    Either way the trainer's log lines go to the cell's log, its run is a phase of the
    cell's time, and what it held is released when it ends."""
    from datasets import Dataset as Rows
    targs = trainer_args(config_cls, ctx, stage, checkpointing=cfg.activation_checkpointing,
                         **args)
    rows = data if isinstance(data, Rows) else Rows.from_list(list(data))
    trainer = trainer_cls(model=model, args=targs, train_dataset=rows,
                          processing_class=tokenizer,
                          callbacks=[FiniteGuard(model), *callbacks],
                          peft_config=lora_config(cfg, task_type), **(trainer_kw or {}))
    if charge is None:  # counted once the trainer has put its adapters in (with LoRA)
        metered(trainer, ctx.ledger, n_params(model),
                reference_params=0 if reference is None else n_params(reference),
                curve=ctx.curves.setdefault(stage, []), forward_only=forward_only).train()
    else:
        charge(trainer)
        timed(to_cell_log(trainer)).train()
    out = merged(trainer.model)
    out.eval()
    return out


PAIR_KEYS = ("prompt", "chosen", "rejected")


def pair_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A preference trainer's rows: each pair's prompt, chosen and rejected text only (a judged
    pair's ``p_judge`` and the like left out)."""
    return [{k: p[k] for k in PAIR_KEYS} for p in pairs]


class ReferenceFreeSettings(Protocol):
    """What :func:`train_reference_free` reads of a method's config (SimPO's, ORPO's): a
    :class:`methods.lora.LoRAOptions` and a :class:`Schedule` with these fields too."""

    lr: float  # peak learning rate
    epochs: float  # passes over the pairs
    batch_size: int  # pairs per step
    lr_scheduler_type: str
    warmup_ratio: float


def train_reference_free(trainer_cls: type[Trainer], config_cls: type[Any],
                         policy: TrainablePolicy, pairs: list[dict[str, Any]],
                         ctx: TrainContext, cfg: ReferenceFreeSettings, stage: str,
                         **loss: Any) -> None:
    """One run of a reference-free TRL preference trainer (CPOTrainer with the SimPO loss,
    ORPOTrainer) on ``pairs`` (prompt/chosen/rejected), in place on ``policy``: ``cfg``'s
    learning rate, epochs, batch size and schedule, ``loss`` the trainer's own settings, and
    one model's FLOPs per step (there is no reference)."""
    policy.model = train_with_trl(
        config_cls, trainer_cls, policy.model, pair_rows(pairs), ctx, stage, cfg,
        tokenizer=policy.tokenizer, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        **schedule(cfg, len(pairs), cfg.batch_size, cfg.epochs), **loss)
