"""The Bradley-Terry reward model (TRL's RewardTrainer): a stage of PPO-RLHF, reported on its
own through the labeler_agreement eval (accuracy against labelers and the gold judge)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from pydantic import Field, field_validator, model_validator

from bench.api import Start, TrainContext
from bench.budget import charge_inference
from bench.logs import to_trainer_log
from methods.common import accumulated, warmup
from methods.feedback import SharedSetConfig, shared_comparisons
from methods.lora import LoRAOptions
from methods.trl_train import pair_rows, scheduler_name, train_with_trl


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
    # rm_ as the reward model's other fields: a config that also trains a policy with a
    # schedule of its own (rsft's SFT) keeps the two apart
    rm_lr_scheduler_type: str = Field("cosine", description="the reward model's learning-rate "
                                      "schedule after the warm-up, a transformers "
                                      "SchedulerType (cosine, linear, constant, ...)")
    rm_warmup_ratio: float = Field(0.05, ge=0, lt=1, description="fraction of the reward "
                                   "model's steps its learning rate warms up over, linearly "
                                   "from 0 (none in a one-step run)")

    @field_validator("rm_lr_scheduler_type")
    @classmethod
    def _known_rm_schedule(cls, v: str) -> str:
        return scheduler_name(v)

    @model_validator(mode="after")
    def _micro_divides(self):
        accumulated(self.rm_batch_size, self.rm_micro_batch_size)
        return self


class SharedSetRewardModel(RewardModelConfig, SharedSetConfig):
    """A config that trains a reward model on the shared comparison set (best_of_n's, rsft's,
    the online RL methods')."""


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


def shared_set_reward_model(ctx: TrainContext, start: Start, cfg: SharedSetRewardModel,
                            stage: str) -> RewardModel:
    """A reward model on the shared comparison set (``cfg``: a :class:`RewardModelConfig` and
    a :class:`methods.feedback.SharedSetConfig`), as best_of_n and rsft train theirs: the very
    labels PPO's reward model and DPO see, charged to the cell."""
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
    tok_side = tokenizer.padding_side
    model = train_with_trl(
        RewardConfig, RewardTrainer, model, pair_rows(pairs), ctx, stage, cfg,
        tokenizer=tokenizer, task_type="SEQ_CLS", num_train_epochs=cfg.rm_epochs,
        learning_rate=cfg.rm_lr, **accumulated(cfg.rm_batch_size, cfg.rm_micro_batch_size),
        center_rewards_coefficient=cfg.rm_center_coef, lr_scheduler_type=cfg.rm_lr_scheduler_type,
        warmup_steps=warmup(cfg.rm_warmup_ratio, len(pairs), cfg.rm_batch_size, cfg.rm_epochs))
    tokenizer.padding_side = tok_side
    return RewardModel(model, tokenizer)
