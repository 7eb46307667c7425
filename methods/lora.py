"""LoRA (Hu et al. 2021, through peft) and activation checkpointing for any training method:
the config fields, the adapters a stage trains and folds back in, and the frozen reference that
is the same network with its adapters off. peft is imported only when LoRA is on."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from pydantic import Field

from bench.api import MethodConfig
from bench.extras import require

if TYPE_CHECKING:  # peft is optional (the real extra): it is imported where LoRA is on
    from transformers import PreTrainedModel


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


def lora_config(cfg: LoRAOptions, task_type: str = "CAUSAL_LM") -> object | None:
    """A ``peft.LoraConfig``, or None when the method trains all weights."""
    if not getattr(cfg, "lora", False):
        return None
    peft = require("peft", "lora = true")
    return peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                           lora_dropout=cfg.lora_dropout, target_modules=cfg.lora_target,
                           task_type=task_type)


def with_adapters(model: PreTrainedModel, cfg: LoRAOptions,
                  task_type: str = "CAUSAL_LM") -> PreTrainedModel:
    """``model`` wrapped with fresh trainable adapters (base weights frozen), or unchanged."""
    lc = lora_config(cfg, task_type)
    if lc is None:
        return model
    return require("peft", "lora = true").get_peft_model(model, lc)


def checkpointed(model: PreTrainedModel, on: bool) -> PreTrainedModel:
    """``model`` with activation checkpointing switched ``on`` or off (non-reentrant: adapters
    get gradients without the inputs requiring any, and dropout replays its masks), for the
    loops TRL does not run (PPO's policy and value model); TRL's trainers take it through
    :func:`methods.common.trainer_args`."""
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


def merged(model: Any) -> PreTrainedModel:
    """Fold trained adapters into the weights and drop the peft wrapper (no-op otherwise).
    A model can only carry adapters if peft was imported to put them there, so without peft
    loaded this is a no-op and peft stays optional."""
    peft = sys.modules.get("peft")
    return model.merge_and_unload() if peft and isinstance(model, peft.PeftModel) else model


class AdaptersOff:
    """The frozen reference for KL when training with LoRA: the same network with its adapters
    disabled -- the weights the adapters started from -- instead of a second copy."""

    def __init__(self, peft_model: Any):
        self.model = peft_model

    def __call__(self, **kw: Any) -> Any:
        with self.model.disable_adapter():
            return self.model(**kw)

    def eval(self) -> AdaptersOff:
        return self
