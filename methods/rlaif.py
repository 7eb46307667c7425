"""RLAIF: preference labels from an AI judge guided by written principles (Bai et al. 2022,
Constitutional AI; Lee et al. 2023, RLAIF), then DPO (default) or PPO on them.

The judge is a language model (by default the pretrained base model, as in Constitutional AI's
feedback model) asked under each principle which of two answers is better, in both orders to
cancel position bias. Its labels are charged to ``ai_comparisons``; human comparisons stay at
zero. Samples are drawn and paired exactly as for the human-feedback methods (K per prompt, all
pairs), so the two kinds of feedback differ only in who labels. Pairs the judge barely separates
(``min_margin``) are paid for but not trained on, so that a judge's faint bias does not become a
certain label.
"""

from __future__ import annotations

import copy
from typing import Literal

from pydantic import Field

from bench.api import TrainContext
from bench.budget import capped
from bench.models import HFPolicy
from methods.dpo import DPOConfig, dpo_train
from methods.feedback import judged_pairs, label_rollouts
from methods.ppo import PPOConfig, ppo_loop
from methods.reward_model import train_reward_model

DEFAULT_CONSTITUTION = ["be helpful", "be honest", "be harmless"]


class RLAIFConfig(DPOConfig):
    constitution: list[str] = Field(default_factory=lambda: list(DEFAULT_CONSTITUTION),
                                    description="principles the judge is asked under")
    judge: str = Field("base", description="'base' (the pretrained model) or 'sft'")
    optimizer: Literal["dpo", "ppo"] = Field("dpo", description="what trains on the AI labels")
    ppo_steps: int = Field(40, ge=1, description="PPO iterations per round when optimizer = 'ppo'")
    kl_coef: float = Field(0.05, description="KL coefficient when optimizer = 'ppo'")
    min_margin: float = Field(0.1, ge=0, lt=0.5, description="train only on pairs the judge "
                              "prefers by more than this: |P(a) - 0.5| > min_margin")

    def ppo_config(self) -> PPOConfig:
        """PPO's settings when it trains on the AI labels (its defaults, but these fields)."""
        return PPOConfig(kl_coef=self.kl_coef, steps=self.ppo_steps, k=self.k,
                         max_new_tokens=self.max_new_tokens)

    def planned_spend(self, budget):
        n = capped(budget, "ai_comparisons")
        total = label_rollouts(n, self.k, self.rounds)
        why = f"{total} sampled for {n} AI comparisons at k={self.k}"
        if self.optimizer == "ppo":
            train, train_why = self.ppo_config().training_rollouts(self.rounds,
                                                                         "ppo_steps")
            total, why = total + train, f"{why}, {train_why}"
        return {"rollouts": (total, why)}


class RLAIF:
    name = "rlaif"
    description = "AI-judge labels under a constitution (both orders), then DPO or PPO"
    Config = RLAIFConfig

    def train(self, base: HFPolicy, ctx: TrainContext, config: RLAIFConfig) -> HFPolicy:
        sft, policy = ctx.stages.sft_start(ctx)
        sft_path = ctx.stages.sft_path(ctx)
        judge_model = ctx.stages.base() if config.judge == "base" else sft
        judge = ctx.scenario.make_ai_judge(judge_model, config.constitution, ctx.ledger)
        per_round = int(ctx.ledger.remaining("ai_comparisons")) // config.rounds
        all_pairs: list[dict] = []
        for rnd in range(config.rounds):
            sampler = sft if rnd == 0 else policy
            pairs = judged_pairs(sampler, ctx.scenario.train_prompts, judge, per_round, config.k,
                                 ctx.ledger, seed=ctx.seed * 1000 + rnd + 17,
                                 temperature=config.label_temperature,
                                 max_new_tokens=config.max_new_tokens)
            # A hard label turns a judge's 0.46 into a certain preference: a faint bias the
            # judge has on every pair (in the micro-world, for one answer register) would
            # become the strongest signal DPO sees. Pairs the judge barely separates in both
            # orders are dropped; they were labeled, so the budget still counts them.
            judged = len(pairs)
            pairs = [p for p in pairs if abs(p["p_judge"] - 0.5) > config.min_margin]
            ctx.log.info("rlaif round %d: %d judged pairs, %d past min_margin=%g", rnd, judged,
                         len(pairs), config.min_margin)
            if not pairs:
                raise ValueError(f"rlaif round {rnd}: no judged pair passed min_margin="
                                 f"{config.min_margin}; lower min_margin or raise "
                                 "ai_comparisons")
            all_pairs += pairs
            if config.optimizer == "dpo":
                dpo_train(policy, sft, pairs, ctx, config, stage=f"rlaif_dpo_{rnd}",
                          starts_at_ref=rnd == 0)
            else:
                pcfg = config.ppo_config()
                rm = train_reward_model(sft_path, policy.tokenizer, all_pairs, ctx, pcfg,
                                        stage=f"rlaif_rm_{rnd}")
                ppo_loop(policy, sft.model, copy.deepcopy(rm.model), rm.reward,
                         ctx.scenario.train_prompts, pcfg, ctx.ledger, seed=ctx.seed * 1000 + rnd,
                         steps=pcfg.steps, progress=ctx.progress,
                         on_step=lambda s, p, t, st: ctx.monitor_gold("rlaif_ppo", s, p, t, **st))
                ctx.artifacts["reward_fn"] = rm.reward
        # evals rebuild the judge on their own ledger, so evaluation never spends the budget
        ctx.artifacts.update(comparisons=all_pairs, make_ai_judge=lambda ledger: (
            ctx.scenario.make_ai_judge(judge_model, config.constitution, ledger)))
        return policy
