"""Supervised fine-tuning on expert demonstrations (TRL's SFTTrainer).

SFT is a *shared stage* (``shared_stage = True``): ppo, dpo and rlaif start from it, so the
runner trains it once per seed and demonstration budget, caches it, and serves the cached model
as the "SFT-only" row too (docs/design.md, budgets).
"""

from __future__ import annotations

from datasets import Dataset
from pydantic import Field

from bench.api import Start, TrainablePolicy, TrainContext, Trained
from bench.budget import capped
from bench.models import n_params
from methods.common import (FiniteGuard, LoRAOptions, lora_config, merged, metered,
                            trainer_args, warmup)


class SFTOptions(LoRAOptions):
    """How supervised fine-tuning trains (SFT's stage, and rsft's fine-tuning on its best
    samples)."""

    epochs: float = Field(3.0, gt=0, description="passes over the demonstrations")
    lr: float = Field(3e-4, gt=0,
                      description="peak learning rate (tiny models; ~2e-5 for real LMs)")
    batch_size: int = Field(32, ge=1, description="demonstrations per step")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="linear warmup fraction")
    max_length: int = Field(256, ge=1, description="tokens per example, prompt included")
    completion_only_loss: bool = Field(True, description="loss on the answer only (InstructGPT)")


class SFTConfig(SFTOptions):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "lr": 2e-4, "epochs": 1.0, "batch_size": 8}}
    def spends(self):
        return frozenset({"demonstrations"})

    def planned_spend(self, budget):
        n = capped(budget, "demonstrations")
        return {"demonstrations": (n, "the shared SFT stage trains on all of them")}

    def planned_tokens(self, budget, demonstrations, seed, count):
        # a lower bound: the trainer adds special tokens
        demos = demonstrations(int(budget.get("demonstrations") or 0), seed)
        tokens = int(sum(count(d["prompt"] + d["completion"]) for d in demos) * self.epochs)
        return tokens, f"{len(demos)} demonstrations x {self.epochs:g} epochs"


def sft_train(policy: TrainablePolicy, examples: list[dict[str, str]], ctx: TrainContext,
              cfg: SFTOptions, stage: str) -> None:
    """One SFTTrainer run on ``examples`` (prompt/completion), in place on ``policy``."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    args = trainer_args(
        TRLSFTConfig, ctx, stage, checkpointing=cfg.activation_checkpointing,
        num_train_epochs=cfg.epochs, learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        warmup_steps=warmup(cfg.warmup_ratio, len(examples), cfg.batch_size, cfg.epochs),
        max_length=cfg.max_length, completion_only_loss=cfg.completion_only_loss,
        lr_scheduler_type="cosine")
    trainer = SFTTrainer(model=policy.model, args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=policy.tokenizer, callbacks=[FiniteGuard(policy.model)],
                         peft_config=lora_config(cfg))
    metered(trainer, ctx.ledger, n_params(policy.model),  # compute charged per step
            curve=ctx.curves.setdefault(stage, [])).train()
    policy.model = merged(trainer.model)
    policy.model.eval()


class SFT:
    name = "sft"
    description = "supervised fine-tuning on demonstrations (TRL SFTTrainer); the shared stage"
    Config = SFTConfig
    starts_from = "base"
    shared_stage = True

    def train(self, start: Start, ctx: TrainContext, config: SFTConfig) -> Trained:
        policy = start.trainable()
        n = int(ctx.ledger.remaining("demonstrations"))
        ctx.ledger.charge("demonstrations", n)
        sft_train(policy, ctx.scenario.demonstrations(n, ctx.seed), ctx, config, "sft")
        return Trained(policy=policy)
