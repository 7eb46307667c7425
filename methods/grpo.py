"""Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath) with TRL's GRPOTrainer:
each prompt's ``num_generations`` responses are scored by the reward model and normalized
within their group, which replaces PPO's value model. The reward model, the comparisons it
trains on, the rollout budget and the KL strength are PPO's (``methods.online``); TRL's
default KL coefficient for GRPO is 0 (DAPO's advice), so ``kl_coef = 0.0`` gives TRL's GRPO."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.api import Start, TrainContext, Trained
from methods.online import OnlineRLConfig, train_online


class GRPOConfig(OnlineRLConfig):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "rm_lr": 1e-4,
                         "rm_epochs": 1.0, "rm_batch_size": 8, "steps": 16, "batch_size": 16,
                         "lr": 1e-5, "kl_coef": 0.05}}
    num_generations: int = Field(8, ge=2, description="responses per prompt in a group "
                                 "(TRL's default 8; DeepSeekMath sampled 64)")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "grpo", description="TRL's loss normalization: grpo (Shao et al., per sequence), dapo "
        "(TRL's default, per token), dr_grpo, bnpo")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="advantage scaling by the group's std (Shao et al.); none: Dr. GRPO")


class GRPO:
    name = "grpo"
    description = "GRPO: group-normalized RL on PPO's reward model and budget (TRL GRPOTrainer)"
    Config = GRPOConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: GRPOConfig) -> Trained:
        from trl import GRPOConfig as TRLGRPOConfig
        from trl import GRPOTrainer
        return train_online(self.name, GRPOTrainer, TRLGRPOConfig, start, ctx, config,
                            loss_type=config.loss_type, scale_rewards=config.scale_rewards)
