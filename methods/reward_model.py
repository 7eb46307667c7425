"""The Bradley-Terry reward model (TRL's RewardTrainer): a stage of PPO-RLHF, reported on its
own through the labeler_agreement eval (accuracy against labelers and the gold judge)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from datasets import Dataset
from pydantic import Field, model_validator

from bench.api import Start, TrainContext
from bench.budget import charge_inference
from bench.logs import to_trainer_log
from bench.models import n_params
from methods.common import (FiniteGuard, LoRAOptions, accumulated, lora_config, merged,
                            metered, trainer_args, warmup)


class RewardModelConfig(LoRAOptions):
    rm_epochs: float = Field(2.0, gt=0, description="passes over the comparisons (InstructGPT: 1)")
    rm_lr: float = Field(5e-4, gt=0,
                         description="peak learning rate (tiny models; ~9e-6 for real LMs)")
    rm_batch_size: int = Field(32, ge=1, description="comparisons per step")
    rm_center_coef: float = Field(0.01, description="keeps rewards near zero (Eisenstein 2023)")
    rm_micro_batch_size: int | None = Field(
        None, ge=1, description="comparisons per forward and backward pass, the gradients "
        "accumulated over rm_batch_size (the same step, to float rounding, in less memory); "
        "None: the whole batch at once")

    @model_validator(mode="after")
    def _micro_divides(self):
        accumulated(self.rm_batch_size, self.rm_micro_batch_size)
        return self


class RewardModel:
    """``reward(prompts, completions)``: the scalar score at the sequence's end (its EOS), as
    RewardTrainer trained it. A RewardFn in the sense of bench.api."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    @torch.no_grad()
    def reward(self, prompts: list[str], completions: list[str]) -> list[float]:
        tok, out = self.tokenizer, []
        texts = [p + c + tok.eos_token for p, c in zip(prompts, completions)]
        side = tok.padding_side
        tok.padding_side = "right"
        try:
            for i in range(0, len(texts), self.batch_size):
                enc = tok(texts[i:i + self.batch_size], return_tensors="pt", padding=True)
                dev = next(self.model.parameters()).device
                charge_inference(self.model, enc["input_ids"].numel())
                out += self.model(**{k: v.to(dev) for k, v in enc.items()}).logits[:, 0].tolist()
        finally:
            tok.padding_side = side
        return out

    __call__ = reward


def shared_set_reward_model(ctx: TrainContext, start: Start, cfg, stage: str) -> RewardModel:
    """A reward model on the shared comparison set (``cfg``: a :class:`RewardModelConfig` and
    a :class:`methods.feedback.SharedSetConfig`), as best_of_n and rsft train theirs: the very
    labels PPO's reward model and DPO see, charged to the cell."""
    from methods.feedback import shared_comparisons
    pairs = shared_comparisons(ctx, start, int(ctx.ledger.remaining("comparisons")), cfg)
    # a copy: the trainer may change the tokenizer, and the SFT stage's is shared by every cell
    return train_reward_model(start.path, copy.deepcopy(start.reference.tokenizer), pairs, ctx,
                              cfg, stage=stage)


def train_reward_model(init: Path, tokenizer, pairs: list[dict[str, str]], ctx: TrainContext,
                       cfg: RewardModelConfig, stage: str = "reward_model") -> RewardModel:
    """Fresh scalar head on the SFT backbone (Ouyang et al. 2022), trained on ``pairs``."""
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    # the new head is missing from the SFT checkpoint by design: transformers' load report
    # saying so goes to the cell's log, not the terminal of every --no-progress run
    with to_trainer_log("transformers"):
        # dtype "auto": the precision the start was saved in, the matrix's (scenario dtype)
        model = AutoModelForSequenceClassification.from_pretrained(init, num_labels=1,
                                                                   use_safetensors=True,
                                                                   dtype="auto")
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(ctx.device)
    args = trainer_args(RewardConfig, ctx, stage, checkpointing=cfg.activation_checkpointing,
                        num_train_epochs=cfg.rm_epochs,
                        learning_rate=cfg.rm_lr,
                        **accumulated(cfg.rm_batch_size, cfg.rm_micro_batch_size),
                        center_rewards_coefficient=cfg.rm_center_coef, lr_scheduler_type="cosine",
                        warmup_steps=warmup(0.05, len(pairs), cfg.rm_batch_size, cfg.rm_epochs))
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    tok_side = tokenizer.padding_side
    trainer = RewardTrainer(model=model, args=args, train_dataset=data,
                            processing_class=tokenizer, callbacks=[FiniteGuard(model)],
                            peft_config=lora_config(cfg, "SEQ_CLS"))
    metered(trainer, ctx.ledger, n_params(model),  # compute charged per step
            curve=ctx.curves.setdefault(stage, [])).train()
    model = merged(trainer.model)
    tokenizer.padding_side = tok_side
    model.eval()
    return RewardModel(model, tokenizer)
