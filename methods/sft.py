"""Supervised fine-tuning on expert demonstrations (TRL's SFTTrainer).

SFT is a *shared stage* (``shared_stage = True``): ppo, dpo and rlaif start from it, so the
runner trains it once per seed and demonstration budget, caches it, and serves the cached model
as the "SFT-only" row too (docs/design.md, budgets).
"""

from __future__ import annotations

from pydantic import Field

from bench.api import Start, TrainablePolicy, TrainContext, Trained
from bench.budget import capped
from methods.lora import LoRAOptions
from methods.trl_train import Schedule, schedule, train_with_trl


class SFTOptions(LoRAOptions, Schedule):
    """How supervised fine-tuning trains (SFT's stage, and rsft's fine-tuning on its best
    samples)."""

    epochs: float = Field(3.0, gt=0, description="passes over the demonstrations")
    lr: float = Field(3e-4, gt=0,
                      description="peak learning rate (tiny models; ~2e-5 for real LMs)")
    batch_size: int = Field(32, ge=1, description="demonstrations per step")
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

    policy.model = train_with_trl(
        TRLSFTConfig, SFTTrainer, policy.model, examples, ctx, stage, cfg,
        tokenizer=policy.tokenizer, num_train_epochs=cfg.epochs, learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        **schedule(cfg, len(examples), cfg.batch_size, cfg.epochs),
        max_length=cfg.max_length, completion_only_loss=cfg.completion_only_loss)


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
