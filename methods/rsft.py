"""Rejection-sampling fine-tuning (expert iteration, as in AlpacaFarm; Dubois et al. 2023): the
SFT model samples ``n`` responses to each of ``prompts`` training prompts, the method's reward
model keeps its favourite, and the SFT model is fine-tuned on the kept ones. Best-of-n's
selection, distilled into the weights, so serving it costs one sample.

Its reward model trains on the shared comparison set PPO's and DPO's do; the candidates are
rollouts, charged before they are sampled.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from bench.api import Start, TrainContext, Trained
from bench.budget import capped
from bench.seeding import derive_seed
from methods.feedback import label_rollouts, pick_prompts, sample_k
from methods.reward_model import SharedSetRewardModel, shared_set_reward_model
from methods.sft import SFTOptions, sft_train


class RSFTConfig(SharedSetRewardModel, SFTOptions):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "lr": 2e-4, "epochs": 1.0, "batch_size": 8, "k": 4,
                         "max_new_tokens": 48, "rm_lr": 1e-4, "rm_epochs": 1.0,
                         "rm_batch_size": 8}}
    n: int = Field(8, ge=2, description="candidates sampled per prompt; the best is kept")
    prompts: int = Field(256, ge=1, description="training prompts to sample candidates for")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the candidates")
    lr: float = Field(1e-4, gt=0, description="fine-tuning learning rate (a third of SFT's: it "
                      "continues from the SFT model)")
    epochs: float = Field(2.0, gt=0, description="passes over the kept samples")

    def planned_spend(self, budget):
        n = capped(budget, "comparisons")
        label, cands = label_rollouts(n, self.k, 1), self.prompts * self.n
        return {"rollouts": (label + cands, f"{label} sampled to rank {n} comparisons at "
                             f"k={self.k}, {cands} candidates ({self.prompts} prompts x "
                             f"n={self.n})")}


def best_of(candidates: list[list[str]], scores: list[list[float]]) -> list[str]:
    """Each prompt's highest-scoring candidate (the first on a tie)."""
    return [c[int(np.argmax(s))] for c, s in zip(candidates, scores, strict=True)]


class RSFT:
    name = "rsft"
    description = "rejection-sampling fine-tuning: SFT on the reward model's best of n samples"
    Config = RSFTConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: RSFTConfig) -> Trained:
        rm = shared_set_reward_model(ctx, start, config, "rsft_reward_model")
        prompts = pick_prompts(ctx.scenario.train_prompts, config.prompts,
                               derive_seed(ctx.seed, "rsft.prompts"))
        cands = sample_k(start.reference, prompts, config.n, ctx.ledger,
                         seed=derive_seed(ctx.seed, "rsft.candidates"),
                         temperature=config.temperature, max_new_tokens=config.max_new_tokens)
        flat = rm.reward([p for p in prompts for _ in range(config.n)],
                         [c for cs in cands for c in cs])
        scores = [flat[i * config.n:(i + 1) * config.n] for i in range(len(prompts))]
        kept = [{"prompt": p, "completion": c} for p, c in zip(prompts, best_of(cands, scores))]
        policy = start.trainable()
        sft_train(policy, kept, ctx, config, "rsft")
        return Trained(policy=policy, reward_fn=rm.reward)
