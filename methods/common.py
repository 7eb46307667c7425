"""What the TRL-backed methods (sft, dpo, the reward model) share: trainer arguments that fit a
benchmark cell, and a guard that stops a run on the first non-finite tensor.

One stage trained end to end with these pieces is :func:`methods.trl_train.train_with_trl`;
LoRA and activation checkpointing live in :mod:`methods.lora` (their names are importable
from here too)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import torch
from transformers import TrainerCallback

from bench import meter
from bench.api import NonFiniteError, TrainContext
from bench.budget import Ledger
from bench.logs import TRAINER_LOG
from bench.seeding import derive_seed
from bench.tracking import trainer_settings
# importable from here as before the split: tests, examples and plugins name them so
from methods.lora import (AdaptersOff, LoRAOptions, checkpointed, lora_config,  # noqa: F401
                          merged, with_adapters)

if TYPE_CHECKING:
    from transformers import Trainer

T = TypeVar("T", bound="Trainer")


class FiniteGuard(TrainerCallback):
    """Checks the loss and the parameters themselves (not the logged averages) after every
    step, so a corrupted run fails at the step it broke instead of logging a clean curve
    (TRL's logged loss can stay finite after the weights turn NaN)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def on_step_end(self, args, state, control, **kwargs):
        for p in self.model.parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteError("parameters", state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not torch.isfinite(torch.tensor(float(loss))):
            raise NonFiniteError("loss", state.global_step)


def trainer_args(config_cls: type[Any], ctx: TrainContext, stage: str, *,
                 checkpointing: bool = False, **kw: Any) -> Any:
    """A TRL config for one stage of one cell: no checkpoints, no hub, no external loggers but
    the matrix's ``report_to`` (TRL's own reporting, as the cell's run: bench/tracking.py),
    seeded, CPU/GPU as the model sits, progress bars only when the run shows progress;
    activation checkpointing only when asked (``checkpointing``: a method's
    ``activation_checkpointing``)."""
    use_cpu = ctx.device != "cuda"  # the matrix's switch, not whatever hardware is visible
    # TRL turns activation checkpointing on by default; tiny models only lose speed, so it is
    # the user's choice for a real one (MemoryOptions). transformers 5 renamed
    # the field (the old name still works, with a FutureWarning in every stage's log)
    names = {f.name for f in dataclasses.fields(config_cls)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else \
        "gradient_checkpointing"
    # the reporting fields TRL's config has (transformers added trackio's in 4.56)
    report = {k: v for k, v in trainer_settings(ctx.tracking).items() if k in names}
    # the weights' init and dropout, and the order the data comes in: two streams, not one
    base = dict(
        output_dir=str(ctx.cell_dir / "trainer" / stage), **report, save_strategy="no",
        logging_steps=5, seed=derive_seed(ctx.seed, "trl.init"),
        data_seed=derive_seed(ctx.seed, "trl.data"),
        disable_tqdm=not ctx.progress, use_cpu=use_cpu, dataloader_num_workers=0,
        bf16=not use_cpu and torch.cuda.is_bf16_supported(), **{ckpt: checkpointing},
        **({f"{ckpt}_kwargs": {"use_reentrant": False}} if checkpointing else {}))
    return config_cls(**{**base, **kw})  # a stage may set its own logging_steps


def accumulated(batch_size: int, micro: int | None) -> dict[str, int]:
    """A trainer's ``batch_size`` rows per optimizer step as micro-batches of ``micro`` rows
    and gradient accumulation (None: the whole batch at once): the same step to float
    rounding, since each part's loss is a mean over the same number of rows."""
    m = micro or batch_size
    if batch_size % m:
        raise ValueError(f"a micro-batch size of {m} must divide the batch size {batch_size}: "
                         f"each step accumulates whole micro-batches")
    return {"per_device_train_batch_size": m, "gradient_accumulation_steps": batch_size // m}


def warmup(ratio: float, n_examples: int, batch_size: int, epochs: float) -> float:
    """``ratio`` for a trainer's ``warmup_steps``, or 0 when the run is a single step.
    transformers rounds a ratio's warm-up up to whole steps and the first warm-up step has a
    learning rate of 0, so a one-step run (a tiny budget: 20 comparisons in one batch) would
    train at lr 0 and leave the model exactly as it started; every longer run is unchanged."""
    steps = math.ceil(math.ceil(n_examples / batch_size) * epochs)
    return ratio if steps > 1 else 0.0


class LogToCell(TrainerCallback):
    """A trainer's log lines (loss, rewards, learning rate per logging step) into the cell's
    log file instead of the terminal: transformers prints them with its PrinterCallback
    whenever its progress bar is off, a dict per step in every ``--no-progress`` run."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            TRAINER_LOG.info("step %d %s", state.global_step, logs)


# what the TRL trainers log per logging step that a cell's curve keeps, under one set of names
# (DPO, KTO, CPO/SimPO and ORPO log rewards/*; KTO logs its KL estimate; SFT and the reward
# model their loss): the report draws every value, one panel each
TRAINER_LOGGED = {"loss": "loss", "rewards/margins": "reward_margin", "margin": "reward_margin",
                  "rewards/accuracies": "reward_accuracy", "rewards/chosen": "reward_chosen",
                  "rewards/rejected": "reward_rejected", "kl": "kto_kl", "accuracy": "accuracy"}


class CurveFromLogs(TrainerCallback):
    """A trainer's logged values (:data:`TRAINER_LOGGED`) appended to a cell's curve, one
    point per logging step, so every TRL-backed method records its curves as PPO does."""

    def __init__(self, curve: list[dict[str, float]]):
        self.curve = curve

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "train_runtime" in (logs or {}):  # the end-of-training summary, not a step's values
            return
        point = {ours: float(logs[theirs]) for theirs, ours in TRAINER_LOGGED.items()
                 if isinstance((logs or {}).get(theirs), (int, float))}
        if point:
            self.curve.append({"step": float(state.global_step), **point})


def to_cell_log(trainer: T) -> T:
    """``trainer`` with its log lines sent to the cell's log (see :class:`LogToCell`), and its
    TensorBoard events, when the matrix reports there, in a folder of the stage's own."""
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogToCell())
    tensorboard_per_stage(trainer)
    return trainer


def tensorboard_per_stage(trainer: Trainer) -> None:
    """transformers' TensorBoard callback writes where TENSORBOARD_LOGGING_DIR says, the cell's
    tensorboard folder while it trains (bench/tracking.py); each trainer gets a subfolder named
    by its stage (:func:`trainer_args` names ``output_dir`` after it), so a cell's stages are
    runs of their own and repeated ones (rounds) do not overlap."""
    from transformers.integrations import TensorBoardCallback
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback) and cb.logging_dir and cb.tb_writer is None:
            cb.logging_dir = str(Path(cb.logging_dir) / Path(trainer.args.output_dir).name)


def batch_tokens(inputs: dict[str, Any]) -> int:
    """The non-padding tokens of a trainer's batch: its attention mask, or (CPO, which keeps
    chosen and rejected apart, each with its prompt inside) the masks of its sequences."""
    if "attention_mask" in inputs:
        return int(inputs["attention_mask"].sum())
    masks = [k for k in inputs if k.endswith("attention_mask") and not k.startswith("prompt")]
    if not masks:
        raise KeyError(f"the batch has no attention mask to count tokens from ({sorted(inputs)})")
    return int(sum(inputs[k].sum() for k in masks))


def metered(trainer: T, ledger: Ledger, n_params: int, *, reference_params: int = 0,
            curve: list[dict[str, float]] | None = None,
            forward_only: Callable[[dict[str, Any]], int] | None = None) -> T:
    """``trainer`` (a transformers/TRL Trainer) with every training step charged to the ledger
    *before* it runs: the batch's non-padding tokens (its attention mask; SFT, DPO and reward
    batches all carry one, DPO's holding chosen and rejected rows) as train_tokens, and their
    FLOPs. A cap on either unit stops the trainer with BudgetExceeded before the step that
    would cross it. Trainer offers no pre-step hook that sees the batch (callbacks get no
    inputs), so this wraps ``training_step`` on the instance. Its log lines go to the cell's
    log (:func:`to_cell_log`), and its logged values to ``curve`` when one is given (a list in
    the cell's ``ctx.curves``). ``forward_only`` counts a batch's further tokens that the
    model and the reference each read in a forward pass alone (KTO's KL estimate on
    mismatched pairs): their FLOPs are charged too, 2 N per token for each of the two."""
    to_cell_log(trainer)
    if curve is not None:
        trainer.add_callback(CurveFromLogs(curve))
    step = trainer.training_step

    def charged(model, inputs, *args, **kwargs):
        ledger.record_training(n_params, batch_tokens(inputs), reference_params=reference_params,
                               forward_tokens=forward_only(inputs) if forward_only else 0)
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = charged
    return timed(trainer)


def timed(trainer: T) -> T:
    """``trainer`` whose ``train`` runs as a phase of the cell's time (named after the
    trainer's class) and then releases what the trainer holds (:func:`release_trainer`)."""
    train = trainer.train

    def run(*args: Any, **kwargs: Any) -> Any:
        with meter.phase(type(trainer).__name__):
            out = train(*args, **kwargs)
        release_trainer(trainer)
        return out

    trainer.train = run
    return trainer


def release_trainer(trainer: Trainer) -> None:
    """Drop what a finished trainer holds besides its model (its optimizer's state, the
    accelerator's references) and hand the freed memory back (bench.meter.release_memory):
    the next stage starts from what the cell still needs, not from this stage's peak."""
    trainer.optimizer = trainer.lr_scheduler = None
    trainer.accelerator.free_memory()
    meter.release_memory()
