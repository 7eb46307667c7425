"""What the TRL-backed methods (sft, dpo, the reward model) share: trainer arguments that fit a
benchmark cell, and a guard that stops a run on the first non-finite tensor."""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from bench.api import NonFiniteError, TrainContext


class FiniteGuard(TrainerCallback):
    """Checks the loss and the parameters themselves (not the logged averages) after every
    step, so a corrupted run fails at the step it broke instead of logging a clean curve
    (TRL issue 6702)."""

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


def trainer_args(config_cls: type, ctx: TrainContext, stage: str, **kw: Any):
    """A TRL config for one stage of one cell: no checkpoints, no hub, no external loggers,
    seeded, CPU/GPU as the model sits, progress bars only when the run shows progress."""
    use_cpu = not torch.cuda.is_available()
    return config_cls(
        output_dir=str(ctx.cell_dir / "trainer" / stage), report_to="none",
        save_strategy="no", logging_steps=5, seed=ctx.seed, data_seed=ctx.seed,
        disable_tqdm=not ctx.progress, use_cpu=use_cpu, dataloader_num_workers=0,
        gradient_checkpointing=False,  # TRL turns it on by default; tiny models only lose speed
        bf16=not use_cpu and torch.cuda.is_bf16_supported(), **kw)


def count_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(tokenizer.encode(t)) for t in texts)
