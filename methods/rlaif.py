"""RLAIF: preference labels from an AI judge guided by written principles (Bai et al. 2022,
Constitutional AI; Lee et al. 2023, RLAIF), then DPO (default) or PPO on them.

The judge is a language model (by default the pretrained base model, as in Constitutional AI's
feedback model) asked under each principle which of two answers is better, in both orders to
cancel position bias; or, with ``judge_kind = "likelihood"``, one that scores each answer by
what the judge model itself believes under each principle (the micro-world's LikelihoodJudge),
so the constitution's wording decides whose beliefs the labels carry. Its labels are charged to ``ai_comparisons``; human comparisons stay at
zero. Samples are drawn and paired exactly as for the human-feedback methods (K per prompt, all
pairs), so the two kinds of feedback differ only in who labels. Pairs the judge barely separates
(``min_margin``) are paid for but not trained on, so that a judge's faint bias does not become a
certain label.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from bench.api import Start, TrainContext, Trained
from bench.budget import Ledger, capped
from methods.dpo import DPOConfig, dpo_train, flip_rate
from methods.feedback import feedback_rounds, label_rollouts
from methods.ppo import PPOConfig, ppo_round

DEFAULT_CONSTITUTION = ["be helpful", "be honest", "be harmless"]
# what PPO on AI labels takes from rlaif's own settings unless [method.rlaif.ppo] sets it
INHERITED = ("k", "max_new_tokens", "lora", "lora_r", "lora_alpha", "lora_dropout",
             "lora_target")
# unused by PPO on AI labels (its labels come from every prompt, so its RL does too)
DECIDED = INHERITED + ("rounds", "label_temperature", "holdout_prompts")
RENAMED = {"ppo_steps": "ppo.steps", "kl_coef": "ppo.kl_coef"}  # alignbench 0.1's names


class RLAIFConfig(DPOConfig):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "lr": 5e-5, "epochs": 1.0,
                         "batch_size": 8, "micro_batch_size": 2}}
    constitution: list[str] = Field(default_factory=lambda: list(DEFAULT_CONSTITUTION),
                                    description="principles the judge is asked under")
    judge: Literal["base", "sft"] = Field("base", description="'base' (the pretrained model) "
                                          "or 'sft' (the start) as the judge model")
    judge_kind: Literal["pairwise", "likelihood"] = Field(
        "pairwise", description="'pairwise' (the judge model asked which answer is better) or "
        "'likelihood' (each answer scored by the judge model's own beliefs under each "
        "principle, where the scenario has such a judge: the micro-world's principles are then "
        "registers such as 'records show' or 'people say')")
    optimizer: Literal["dpo", "ppo"] = Field("dpo", description="what trains on the AI labels")
    min_margin: float = Field(0.1, ge=0, lt=0.5, description="train only on pairs the judge "
                              "prefers by more than this: |P(a) - 0.5| > min_margin")
    ppo: PPOConfig = Field(default_factory=lambda: PPOConfig(kl_coef=0.05, steps=40),
                           description="PPO's own config when optimizer = 'ppo' (table "
                           "[method.rlaif.ppo]; defaults kl_coef 0.05, steps 40, and rlaif's "
                           "k, max_new_tokens and LoRA settings)")

    @model_validator(mode="before")
    @classmethod
    def _ppo_table(cls, data: Any) -> Any:
        """PPO's table takes rlaif's k, max_new_tokens and LoRA settings (and PPO's own
        labeling fields stay unused), so it may set them only to those values; everything
        else in it is PPO's own config, over the defaults kl_coef 0.05 and steps 40."""
        if not isinstance(data, dict):
            return data
        old = [k for k in RENAMED if k in data]
        if old:
            raise ValueError(f"rlaif.{old[0]} is now rlaif.{RENAMED[old[0]]} (in a "
                             f"[method.rlaif.ppo] table)")
        given = data.get("ppo", {})
        if isinstance(given, PPOConfig):  # built in Python: what its caller set
            given = given.model_dump(include=given.model_fields_set)
        if not isinstance(given, dict):
            return data
        decided = {"rounds": 1, "label_temperature": 1.0, "holdout_prompts": None,
                   **{k: data.get(k, cls.model_fields[k].get_default(call_default_factory=True))
                      for k in INHERITED}}
        bad = [k for k in DECIDED if k in given and given[k] != decided[k]]
        if "holdout_prompts" in bad:
            raise ValueError("rlaif.ppo.holdout_prompts: RLAIF's judge labels every training "
                             "prompt, so its PPO trains on every one; hold a family out in ppo")
        if bad:
            raise ValueError(f"rlaif.ppo.{bad[0]} is decided by rlaif itself; set rlaif."
                             f"{bad[0]} instead")
        return {**data, "ppo": {"kl_coef": 0.05, "steps": 40, **given, **decided}}

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """The ppo table without the fields rlaif decides, so a dumped config (matrix.toml,
        a cell's record) edited and loaded again follows rlaif's own settings."""
        out = handler(self)
        if isinstance(out.get("ppo"), dict):
            out["ppo"] = {k: v for k, v in out["ppo"].items() if k not in DECIDED}
        return out

    def check_world(self, world):
        if self.judge_kind == "likelihood":
            if world.make_likelihood_judge is None:
                raise ValueError("rlaif.judge_kind = 'likelihood': this scenario has no "
                                 "likelihood judge; use judge_kind = 'pairwise'")
            world.make_likelihood_judge(None, self.constitution, Ledger())  # checks principles

    def spends(self):
        return frozenset({"ai_comparisons", "rollouts"})

    def planned_spend(self, budget):
        flip_rate(self)  # robust DPO on AI labels needs their flip rate stated too
        n = capped(budget, "ai_comparisons")
        total = label_rollouts(n, self.k, self.rounds)
        why = f"{total} sampled for {n} AI comparisons at k={self.k}"
        if self.optimizer == "ppo":
            train, train_why = self.ppo.training_rollouts(self.rounds, "ppo.steps")
            total, why = total + train, f"{why}, {train_why}"
        return {"rollouts": (total, why)}


class RLAIF:
    name = "rlaif"
    description = "AI-judge labels under a constitution (both orders), then DPO or PPO"
    Config = RLAIFConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: RLAIFConfig) -> Trained:
        sft, policy = start.reference, start.trainable()
        judge_model = ctx.stages.base() if config.judge == "base" else sft
        config.check_world(ctx.scenario)  # the runner's preflight, for a direct caller too
        make_judge = (ctx.scenario.make_ai_judge if config.judge_kind == "pairwise"
                      else ctx.scenario.make_likelihood_judge)
        judge = make_judge(judge_model, config.constitution, ctx.ledger)
        all_pairs: list[dict] = []
        rm = None
        for rnd, pairs in feedback_rounds(ctx, start, policy, config, judge):
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
                rm = ppo_round(policy, start, all_pairs, ctx, config.ppo, rnd, curve="rlaif_ppo")
        # evals rebuild the judge on their own ledger, so evaluation never spends the budget
        return Trained(policy=policy, reward_fn=rm.reward if rm is not None else None,
                       make_ai_judge=lambda ledger: make_judge(judge_model,
                                                               config.constitution, ledger))
