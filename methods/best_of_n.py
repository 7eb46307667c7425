"""Best-of-n (Nakano et al. 2021; Stiennon et al. 2020): no policy training at all. At inference
the SFT model samples ``n`` responses per prompt and the method's reward model picks its
favourite, the baseline every RL method must beat at its KL (Gao et al. 2022).

Fair by construction: its reward model trains on the shared comparison set PPO's and DPO's do,
charged the same labels and rollouts; and its inference is never free: the ``n`` samples per
served answer are the budget's ``samples_per_response`` (a cap on it refuses an ``n`` above it
before anything runs), and every forward pass of sampling and scoring at evaluation is charged to
the evaluation's ``inference_flops``, so its cost table row shows what serving it costs.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from bench.api import Policy, RewardFn, Start, TrainContext, Trained
from methods.reward_model import SharedSetRewardModel, shared_set_reward_model


class BestOfNConfig(SharedSetRewardModel):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "rm_lr": 1e-4,
                         "rm_epochs": 1.0, "rm_batch_size": 8}}
    n: int = Field(8, ge=1, description="responses sampled per answer served; the reward "
                   "model's favourite is returned")

    def spends(self):
        return super().spends() | {"samples_per_response"}

    def planned_spend(self, budget):
        return {**super().planned_spend(budget),
                "samples_per_response": (self.n, f"best of {self.n} at inference")}


class BestOfNPolicy:
    """A :class:`bench.api.SelectingPolicy`: ``generate`` samples ``n`` candidates per prompt
    from ``base`` at the caller's temperature and returns the one ``reward`` scores highest
    (the first on a tie), so it is compared with the other rows at the decoding every row
    gets (the win-rate's 0.7 for both sides). A greedy request (temperature 0) has one
    candidate, the base's greedy answer, which it returns without sampling it n times.

    (The first zoo run sampled the candidates at a fixed 1.0 while the win-rate sampled every
    other row at 0.7: best of 8 at 1.0 read 0.483 against SFT at 0.7, SFT's own level.)"""

    def __init__(self, base: Policy, reward: RewardFn, n: int):
        self.base, self.reward, self.n = base, reward, n
        self.name = f"best_of_{n}"

    def format_chat(self, user_messages: list[str]) -> list[str]:
        return self.base.format_chat(user_messages)

    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
                 seed: int = 0) -> list[str]:
        if temperature <= 0 or not prompts:  # greedy: every candidate is the same answer
            return self.base.generate(prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                                      seed=seed)
        flat = [p for p in prompts for _ in range(self.n)]
        texts = self.base.generate(flat, max_new_tokens=max_new_tokens,
                                   temperature=temperature, seed=seed)
        scores = np.asarray(self.reward(flat, texts), dtype=float).reshape(len(prompts), self.n)
        best = scores.argmax(axis=1)
        return [texts[i * self.n + int(j)] for i, j in enumerate(best)]

    def logprob(self, prompts: list[str], completions: list[str]) -> list[float]:
        return self.base.logprob(prompts, completions)


class BestOfN:
    name = "best_of_n"
    description = "best-of-n: the reward model picks among n SFT samples at inference"
    Config = BestOfNConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: BestOfNConfig) -> Trained:
        rm = shared_set_reward_model(ctx, start, config, "best_of_n_reward_model")
        policy = BestOfNPolicy(start.reference, rm.reward, config.n)
        return Trained(policy=policy, reward_fn=rm.reward, samples_per_response=config.n)
