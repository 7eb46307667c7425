"""What the critic-free online RL methods (rloo, grpo) share: TRL's online trainer run against
the method's own reward model, under the ledger, at PPO's settings.

Fair by construction (docs/design.md): the reward model trains on the very comparisons PPO's
and DPO's do (``shared_comparisons``: the SFT model's samples ranked by the panel); every
sampled response is charged to ``rollouts`` before it is sampled, as PPO's are; a response that
never ends loses ``missing_eos_penalty`` as in PPO; and the KL coefficient, learning rate,
rollout temperature and response length default to PPO's, not to TRL's defaults, which differ
between the two trainers (GRPO beta 0.0, RLOO beta 0.05), so a comparison at default settings
compares the estimators, not their KL strengths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from transformers import TrainerCallback

from bench.api import Start, TrainContext, Trained
from bench.budget import capped, charge_inference
from bench.models import n_params
from methods.feedback import label_rollouts, shared_comparisons
from methods.reward_model import RewardModel, SharedSetRewardModel, train_reward_model
from methods.trl_train import Schedule, schedule, train_with_trl


class OnlineRLConfig(SharedSetRewardModel, Schedule):
    """The reward model's settings and the shared set it trains on (PPO's K, temperature and
    length), then the online trainer's."""

    # TRL's own for its online trainers, which PPO's constant rate does not match
    lr_scheduler_type: str = Field("linear", description="learning-rate schedule over the "
                                   "steps after the warm-up, a transformers SchedulerType "
                                   "(linear: TRL's default, down to 0 at the last step)")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of the steps the "
                                "learning rate warms up over, linearly from 0 (none in a "
                                "one-step run)")

    steps: int = Field(40, ge=1, description="optimizer steps (PPO's steps)")
    batch_size: int = Field(64, ge=1, description="responses sampled per step (PPO's batch)")
    num_generations: int = Field(4, ge=2, description="responses per prompt in a group")
    lr: float = Field(3e-5, gt=0, description="learning rate (PPO's policy lr)")
    kl_coef: float = Field(0.1, ge=0, description="KL penalty to the SFT model: PPO's 0.1, "
                           "not TRL's default (GRPO 0.0, RLOO 0.05)")
    clip: float = Field(0.2, description="policy ratio clip (PPO's; TRL's epsilon)")
    temperature: float = Field(0.7, description="rollout temperature (PPO's)")
    missing_eos_penalty: float = Field(1.0, description="subtracted when a response never ends "
                                       "(PPO's)")

    def planned_spend(self, budget):
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of "
                             f"num_generations {self.num_generations}")
        n = capped(budget, "comparisons")
        label = label_rollouts(n, self.k, 1)
        train = self.steps * self.batch_size
        return {"rollouts": (label + train, f"{label} sampled to rank {n} comparisons at "
                             f"k={self.k}, {train} for {self.steps} steps x batch_size "
                             f"{self.batch_size}")}


def train_online(name: str, trainer_cls: type, config_cls: type, start: Start,
                 ctx: TrainContext, cfg: OnlineRLConfig, **extra: Any) -> Trained:
    """A reward model on the shared comparisons, then ``cfg.steps`` steps of ``trainer_cls``
    (TRL's RLOOTrainer or GRPOTrainer) on the start's trainable copy against it. The curve
    ``name`` gets one point per step: proxy (reward model) and gold reward, the fraction of
    responses that never ended, and what the trainer logged (loss, KL, entropy, clip ratios)."""
    policy = start.trainable()
    pairs = shared_comparisons(ctx, start, int(ctx.ledger.remaining("comparisons")), cfg)
    rm = train_reward_model(start.path, policy.tokenizer, pairs, ctx, cfg,
                            stage=f"{name}_reward_model")
    reward = _Scored(rm, policy.tokenizer.eos_token_id, cfg.missing_eos_penalty, ctx, name)
    model = policy.model  # counted once the trainer has put its adapters in (with LoRA)
    policy.model = train_with_trl(
        config_cls, trainer_cls, model, [{"prompt": p} for p in ctx.scenario.train_prompts],
        ctx, name, cfg, tokenizer=policy.tokenizer, trainer_kw={"reward_funcs": reward},
        charge=lambda trainer: _metered(trainer, ctx, n_params(model), cfg.kl_coef > 0),
        callbacks=[_LogsToCurve(ctx, name)], max_steps=cfg.steps, logging_steps=1,
        per_device_train_batch_size=cfg.batch_size, num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature,
        beta=cfg.kl_coef, learning_rate=cfg.lr, epsilon=cfg.clip,
        # one batch a step: the warm-up as methods.trl_train.schedule gives it
        **schedule(cfg, cfg.steps, 1, 1.0), **extra)
    return Trained(policy=policy, reward_fn=rm.reward)


class _Scored:
    """TRL's reward function: the reward model's score, less the missing-EOS penalty; each
    call (one step's sampled responses) adds a point to the method's curve."""

    __name__ = "reward_model"  # TRL names its logged reward columns after the function

    def __init__(self, rm: RewardModel, eos_id: int, penalty: float, ctx: TrainContext,
                 curve: str):
        self.rm, self.eos_id, self.penalty, self.ctx, self.curve = rm, eos_id, penalty, ctx, curve
        self.step = 0

    def __call__(self, prompts: list[str], completions: list[str],
                 completion_ids: list[list[int]], **_: Any) -> list[float]:
        proxy = np.asarray(self.rm.reward(prompts, completions), dtype=float)
        ended = np.asarray([self.eos_id in ids for ids in completion_ids])
        self.ctx.monitor_gold(self.curve, self.step, prompts, completions,
                              proxy_reward=float(proxy.mean()),
                              no_eos_frac=float((~ended).mean()))
        self.step += 1
        return (proxy - self.penalty * ~ended).tolist()


def _metered(trainer: Any, ctx: TrainContext, params: int, has_reference: bool) -> None:
    """Every generation batch is charged before it is sampled (its rollouts), and its tokens
    and FLOPs once sampled, before the update that trains on them (policy forward and
    backward, plus the reference's forward when there is a KL term). TRL offers no hook
    between sampling and the update, so this wraps the trainer's generation method on the
    instance, as ``methods.common.metered`` wraps ``training_step``."""
    generate = trainer._generate_and_score_completions

    def charged(inputs: list[dict[str, Any]]) -> dict[str, Any]:
        ctx.ledger.charge("rollouts", len(inputs))
        out = generate(inputs)
        tokens = int(out["prompt_mask"].sum() + out["completion_mask"].sum())
        charge_inference(trainer.model, tokens)  # TRL sampled them
        ctx.ledger.record_training(params, tokens,
                                   reference_params=params if has_reference else 0)
        return out

    trainer._generate_and_score_completions = charged


# what the trainers log that the curve keeps, under the names PPO's curve uses where it has one
LOGGED = {"loss": "loss", "kl": "kl", "entropy": "entropy",
          "clip_ratio/region_mean": "clip_frac", "completions/mean_length": "response_length",
          "grad_norm": "grad_norm"}


class _LogsToCurve(TrainerCallback):
    """When training ends, the trainer's per-step log merged into the method's curve
    (:func:`_merge_logs`)."""

    def __init__(self, ctx: TrainContext, curve: str):
        self.ctx, self.curve = ctx, curve

    def on_train_end(self, args, state, control, **kwargs):
        _merge_logs(self.ctx.curves.get(self.curve, []), state.log_history)


def _merge_logs(curve: list[dict[str, float]], history: list[dict[str, Any]]) -> None:
    """The trainer's per-step log (``logging_steps=1``: one entry per step, numbered from 1)
    into the curve's points, which the reward function numbered from 0."""
    by_step = {int(h["step"]): h for h in history if "step" in h and "loss" in h}
    for point in curve:
        logged = by_step.get(int(point["step"]) + 1, {})
        point.update({ours: float(logged[theirs]) for theirs, ours in LOGGED.items()
                      if theirs in logged})
