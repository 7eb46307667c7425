"""What the TRL-backed methods (sft, dpo, the reward model) share: trainer arguments that fit a
benchmark cell, and a guard that stops a run on the first non-finite tensor."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from pydantic import Field

from bench import meter
from bench.api import MethodConfig, NonFiniteError, TrainContext
from bench.budget import Ledger
from bench.extras import require
from bench.logs import TRAINER_LOG
from bench.tracking import trainer_settings


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


def trainer_args(config_cls: type, ctx: TrainContext, stage: str, *,
                 checkpointing: bool = False, **kw: Any):
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
    base = dict(
        output_dir=str(ctx.cell_dir / "trainer" / stage), **report,
        save_strategy="no", logging_steps=5, seed=ctx.seed, data_seed=ctx.seed,
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


def to_cell_log(trainer):
    """``trainer`` with its log lines sent to the cell's log (see :class:`LogToCell`), and its
    TensorBoard events, when the matrix reports there, in a folder of the stage's own."""
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogToCell())
    tensorboard_per_stage(trainer)
    return trainer


def tensorboard_per_stage(trainer) -> None:
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


def metered(trainer, ledger: Ledger, n_params: int, *, reference_params: int = 0,
            curve: list[dict[str, float]] | None = None):
    """``trainer`` (a transformers/TRL Trainer) with every training step charged to the ledger
    *before* it runs: the batch's non-padding tokens (its attention mask; SFT, DPO and reward
    batches all carry one, DPO's holding chosen and rejected rows) as train_tokens, and their
    FLOPs. A cap on either unit stops the trainer with BudgetExceeded before the step that
    would cross it. Trainer offers no pre-step hook that sees the batch (callbacks get no
    inputs), so this wraps ``training_step`` on the instance. Its log lines go to the cell's
    log (:func:`to_cell_log`), and its logged values to ``curve`` when one is given (a list in
    the cell's ``ctx.curves``)."""
    to_cell_log(trainer)
    if curve is not None:
        trainer.add_callback(CurveFromLogs(curve))
    step = trainer.training_step

    def charged(model, inputs, *args, **kwargs):
        ledger.record_training(n_params, batch_tokens(inputs), reference_params=reference_params)
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = charged
    train = trainer.train

    def timed(*args, **kwargs):  # the trainer's run is a phase of the cell's time
        with meter.phase(type(trainer).__name__):
            out = train(*args, **kwargs)
        release_trainer(trainer)
        return out

    trainer.train = timed
    return trainer


def release_trainer(trainer) -> None:
    """Drop what a finished trainer holds besides its model (its optimizer's state, the
    accelerator's references) and hand the freed memory back (bench.meter.release_memory):
    the next stage starts from what the cell still needs, not from this stage's peak."""
    trainer.optimizer = trainer.lr_scheduler = None
    trainer.accelerator.free_memory()
    meter.release_memory()


def train_reference_free(trainer_cls: type, config_cls: type, policy, pairs: list[dict],
                         ctx: TrainContext, cfg, stage: str, **loss: Any) -> None:
    """One run of a reference-free TRL preference trainer (CPOTrainer with the SimPO loss,
    ORPOTrainer) on ``pairs`` (prompt/chosen/rejected), in place on ``policy``: ``cfg``'s
    learning rate, epochs and batch size on a cosine schedule with DPO's warm-up, ``loss``
    the trainer's own settings, and one model's FLOPs per step (there is no reference)."""
    from datasets import Dataset

    from bench.models import n_params
    args = trainer_args(config_cls, ctx, stage, checkpointing=cfg.activation_checkpointing,
                        learning_rate=cfg.lr,
                        num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                        lr_scheduler_type="cosine",
                        warmup_steps=warmup(0.05, len(pairs), cfg.batch_size, cfg.epochs),
                        **loss)
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")}
                              for p in pairs])
    trainer = trainer_cls(model=policy.model, args=args, train_dataset=data,
                          processing_class=policy.tokenizer,
                          callbacks=[FiniteGuard(policy.model)], peft_config=lora_config(cfg))
    metered(trainer, ctx.ledger, n_params(policy.model),
            curve=ctx.curves.setdefault(stage, [])).train()
    policy.model = merged(trainer.model)
    policy.model.eval()


class LoRAOptions(MethodConfig):
    """LoRA (Hu et al. 2021, through peft) for any training method, so bigger models fit. Each
    stage trains fresh adapters and merges them when it ends, so every stage's output is a
    plain model that the next stage, the evals and the cache handle like any other."""

    lora: bool = Field(False, description="train LoRA adapters instead of all weights")
    lora_r: int = Field(16, ge=1, description="adapter rank")
    lora_alpha: int = Field(32, ge=1, description="adapter scale numerator (alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    lora_target: str | list[str] = Field("all-linear", description="peft target_modules: "
                                         "module names, a regex, or 'all-linear'")
    activation_checkpointing: bool = Field(
        False, description="recompute each layer's activations in the backward pass instead of "
        "keeping them (real models: less memory, about a third more time; the same numbers to "
        "float rounding)")


def lora_config(cfg: LoRAOptions, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig, or None when the method trains all weights."""
    if not getattr(cfg, "lora", False):
        return None
    peft = require("peft", "lora = true")
    return peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                           lora_dropout=cfg.lora_dropout, target_modules=cfg.lora_target,
                           task_type=task_type)


def with_adapters(model, cfg: LoRAOptions, task_type: str = "CAUSAL_LM"):
    """``model`` wrapped with fresh trainable adapters (base weights frozen), or unchanged."""
    lc = lora_config(cfg, task_type)
    if lc is None:
        return model
    return require("peft", "lora = true").get_peft_model(model, lc)


def checkpointed(model, on: bool):
    """``model`` with activation checkpointing switched ``on`` or off (non-reentrant: adapters
    get gradients without the inputs requiring any, and dropout replays its masks), for the
    loops TRL does not run (PPO's policy and value model); TRL's trainers take it through
    :func:`trainer_args`."""
    # transformers 5 renamed gradient_* to activation_* (the old names warn in every cell's log)
    new = hasattr(model, "activation_checkpointing_enable")
    if on:
        kw = {"use_reentrant": False}
        if new:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    elif new and model.is_activation_checkpointing:
        model.activation_checkpointing_disable()
    elif not new and getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()
    return model


def merged(model):
    """Fold trained adapters into the weights and drop the peft wrapper (no-op otherwise).
    A model can only carry adapters if peft was imported to put them there, so without peft
    loaded this is a no-op and peft stays optional."""
    peft = sys.modules.get("peft")
    return model.merge_and_unload() if peft and isinstance(model, peft.PeftModel) else model


class AdaptersOff:
    """The frozen reference for KL when training with LoRA: the same network with its adapters
    disabled -- the weights the adapters started from -- instead of a second copy."""

    def __init__(self, peft_model):
        self.model = peft_model

    def __call__(self, **kw):
        with self.model.disable_adapter():
            return self.model(**kw)

    def eval(self):
        return self
