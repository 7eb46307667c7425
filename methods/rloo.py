"""REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics") with TRL's RLOOTrainer:
PPO-RLHF without the value model. Each prompt's ``num_generations`` responses are scored by the
reward model, and each one's baseline is the mean score of the others. The reward model, the
comparisons it trains on, the rollout budget and the KL strength are PPO's
(``methods.online``), so rloo against ppo at one budget compares the estimators."""

from __future__ import annotations

from pydantic import Field

from bench.api import Start, TrainContext, Trained
from methods.online import OnlineRLConfig, train_online


class RLOOConfig(OnlineRLConfig):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "rm_lr": 1e-4,
                         "rm_epochs": 1.0, "rm_batch_size": 8, "steps": 16, "batch_size": 16,
                         "lr": 1e-5, "kl_coef": 0.05}}
    num_generations: int = Field(4, ge=2, description="responses per prompt: the leave-one-out "
                                 "baseline averages the other k-1 (Ahmadian et al.: k=4; TRL's "
                                 "default is 2)")


class RLOO:
    name = "rloo"
    description = "RLOO: critic-free RL on PPO's reward model and budget (TRL RLOOTrainer)"
    Config = RLOOConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: RLOOConfig) -> Trained:
        from trl import RLOOConfig as TRLRLOOConfig
        from trl import RLOOTrainer
        return train_online(self.name, RLOOTrainer, TRLRLOOConfig, start, ctx, config)
