"""Supervised fine-tuning on expert demonstrations (TRL's SFTTrainer).

SFT is a *shared stage* (``shared_stage = True``): ppo, dpo and rlaif start from it, so the
runner trains it once per seed and demonstration budget, caches it, and serves the cached model
as the "SFT-only" row too (design/budgets.md).
"""

from __future__ import annotations

from datasets import Dataset
from pydantic import Field

from bench.api import Start, TrainContext, Trained
from bench.budget import capped
from bench.models import n_params
from methods.common import (FiniteGuard, LoRAOptions, lora_config, merged, metered,
                            trainer_args, warmup)


class SFTConfig(LoRAOptions):
    epochs: float = Field(3.0, gt=0, description="passes over the demonstrations")
    lr: float = Field(3e-4, gt=0,
                      description="peak learning rate (tiny models; ~2e-5 for real LMs)")
    batch_size: int = Field(32, ge=1, description="demonstrations per step")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="linear warmup fraction")
    max_length: int = Field(256, ge=1, description="tokens per example, prompt included")
    completion_only_loss: bool = Field(True, description="loss on the answer only (InstructGPT)")

    def planned_spend(self, budget):
        n = capped(budget, "demonstrations")
        return {"demonstrations": (n, "the shared SFT stage trains on all of them")}

    def planned_tokens(self, budget, demonstrations, seed, count):
        # a lower bound: the trainer adds special tokens
        demos = demonstrations(int(budget.get("demonstrations") or 0), seed)
        tokens = int(sum(count(d["prompt"] + d["completion"]) for d in demos) * self.epochs)
        return tokens, f"{len(demos)} demonstrations x {self.epochs:g} epochs"


class SFT:
    name = "sft"
    description = "supervised fine-tuning on demonstrations (TRL SFTTrainer); the shared stage"
    Config = SFTConfig
    starts_from = "base"
    shared_stage = True

    def train(self, start: Start, ctx: TrainContext, config: SFTConfig) -> Trained:
        from trl import SFTConfig as TRLSFTConfig
        from trl import SFTTrainer

        policy = start.trainable()
        n = int(ctx.ledger.remaining("demonstrations"))
        ctx.ledger.charge("demonstrations", n)
        demos = ctx.scenario.demonstrations(n, ctx.seed)
        args = trainer_args(
            TRLSFTConfig, ctx, "sft", num_train_epochs=config.epochs, learning_rate=config.lr,
            per_device_train_batch_size=config.batch_size,
            warmup_steps=warmup(config.warmup_ratio, len(demos), config.batch_size,
                                config.epochs),
            max_length=config.max_length, completion_only_loss=config.completion_only_loss,
            lr_scheduler_type="cosine")
        trainer = SFTTrainer(model=policy.model, args=args,
                             train_dataset=Dataset.from_list(demos),
                             processing_class=policy.tokenizer,
                             callbacks=[FiniteGuard(policy.model)],
                             peft_config=lora_config(config))
        metered(trainer, ctx.ledger, n_params(policy.model)).train()  # compute charged per step
        policy.model = merged(trainer.model)
        policy.model.eval()
        return Trained(policy=policy)
