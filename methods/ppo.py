"""PPO-RLHF, written here because TRL removed its PPOTrainer in 2026.

Pipeline (Ouyang et al. 2022): SFT model -> K samples per prompt ranked by the panel -> a
Bradley-Terry reward model -> PPO against it with a per-token KL penalty to the frozen SFT
reference (Ziegler et al. 2019), optionally iterated for several rounds. Implementation details
follow Huang et al. 2024, "The N+ implementation details of RLHF with PPO" (cited as N+ below).

The math is pure functions in methods/ppo_math.py, each with known-answer tests.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from bench import meter
from bench.api import NonFiniteError, RewardFn, Start, TrainablePolicy, TrainContext, Trained
from bench.budget import Ledger, capped, inference_flops, training_flops
from bench.models import n_params
from bench.sampling import left_pad, sample
from bench.seeding import derive_seed
from bench.tracking import curve_logger
from methods.feedback import (check_labeler, feedback_prompts, feedback_rounds, label_rollouts,
                              pick_prompts)
from methods.lora import AdaptersOff, checkpointed, merged, with_adapters
# importable from here too (tests/test_ppo.py reads them as methods.ppo's)
from methods.ppo_math import (AdaptiveKL, Batch, gae, kl_k1, kl_k3,  # noqa: F401
                              kl_penalized_rewards, make_batch, masked_mean, policy_loss,
                              value_loss, whiten)
from methods.reward_model import RewardModel, RewardModelConfig, train_reward_model

# --------------------------------------------------------------------------- config


class PPOConfig(RewardModelConfig):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "rm_lr": 1e-4,
                         "rm_epochs": 1.0, "rm_batch_size": 8, "rm_micro_batch_size": 4,
                         "steps": 16, "batch_size": 16, "micro_batch_size": 2, "epochs": 2,
                         "lr": 1e-5, "value_lr": 1e-4, "kl_coef": 0.05}}
    rounds: int = Field(1, ge=1, description="RLHF rounds; labels and rollouts split evenly")
    k: int = Field(5, ge=2, description="responses ranked per prompt (InstructGPT: 4-9)")
    label_temperature: float = Field(1.0, description="sampling temperature for labeling")
    steps: int = Field(40, ge=1, description="PPO iterations per round")
    batch_size: int = Field(64, ge=1, description="rollouts per PPO iteration")
    epochs: int = Field(4, ge=1, description="passes over each batch (N+: 4)")
    minibatches: int = Field(1, ge=1, description="minibatches per epoch")
    micro_batch_size: int | None = Field(
        None, ge=1, description="rows per forward and backward pass within a minibatch, the "
        "gradients accumulated (the same update, to float rounding, in less memory); None: "
        "the whole minibatch at once")
    lr: float = Field(3e-5, gt=0, description="policy learning rate (tiny models; ~1e-6 real LMs)")
    value_lr: float = Field(3e-5, gt=0, description="value model learning rate")
    kl_coef: float = Field(0.1, ge=0, description="KL penalty (N+: 0.05; 0.1 holds gold here)")
    adaptive_kl: bool = Field(False, description="Ziegler et al.'s adaptive controller")
    target_kl: float = Field(6.0, description="target KL for the adaptive controller")
    kl_horizon: float = Field(10000.0, description="controller horizon, in rollouts")
    gamma: float = Field(1.0, description="discount (N+: 1)")
    lam: float = Field(0.95, description="GAE lambda (N+: 0.95)")
    clip: float = Field(0.2, description="policy ratio clip")
    value_clip: float = Field(0.2, description="value clip")
    temperature: float = Field(0.7, description="rollout temperature (N+: 0.7)")
    missing_eos_penalty: float = Field(1.0, description="subtracted when a response never ends")
    max_new_tokens: int = Field(24, ge=1, description="response length limit")
    whiten_rewards: bool = Field(False, description="N+ whitens advantages, not rewards")
    max_grad_norm: float = Field(1.0, description="gradient clipping")
    rm_monitor_prompts: int = Field(
        96, ge=0, description="training prompts on which each round's reward model is checked "
        "against gold (two samples of the start and of the policy each; measurement, charged to "
        "no budget, its seconds its own phase); 0: no check")
    holdout_prompts: str | None = Field(
        None, description="a regular expression: training prompts it matches get no feedback "
        "(no comparisons, no RL), a prompt family the reward model never sees; labeler_agreement "
        "reports the reward model on it apart (rm_vs_gold.held_out). None: every prompt")

    @field_validator("holdout_prompts")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            if not v:
                raise ValueError("an empty expression matches every prompt; name a family, "
                                 "or leave holdout_prompts unset")
            try:
                re.compile(v)
            except re.error as err:
                raise ValueError(f"not a regular expression ({err})") from None
        return v

    def training_rollouts(self, rounds: int, steps_key: str = "steps") -> tuple[int, str]:
        """Rollouts ppo_loop charges over ``rounds`` rounds of ``steps`` batches, and why (naming
        the caller's own config key for the steps)."""
        n = rounds * self.steps * self.batch_size
        return n, (f"{n} for {rounds} round(s) x {self.steps} {steps_key} x batch_size "
                   f"{self.batch_size}")

    def check_world(self, world):
        feedback_prompts(world.train_prompts, self.holdout_prompts)
        check_labeler(world, self.rounds, "ppo")

    def spends(self):
        return frozenset({"comparisons", "rollouts"})

    def planned_spend(self, budget):
        n = capped(budget, "comparisons")
        label = label_rollouts(n, self.k, self.rounds)
        train, why = self.training_rollouts(self.rounds)
        return {"rollouts": (label + train, f"{label} sampled to rank {n} comparisons at "
                             f"k={self.k}, {why}")}


# --------------------------------------------------------------------------- rollouts


def token_logprobs(model, batch: Batch, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities and entropies of the response tokens, logits divided by the sampling
    temperature so they describe the distribution that was sampled (N+)."""
    n_resp = batch.ids.shape[1] - batch.p_len
    # only the positions that predict response tokens go through the output projection
    logits = model(input_ids=batch.ids, attention_mask=batch.attn, position_ids=batch.pos,
                   logits_to_keep=n_resp + 1).logits
    logits = logits[:, :-1].float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, batch.ids[:, batch.p_len:, None]).squeeze(-1)
    with torch.no_grad():  # a statistic, never a loss term here: no graph to record
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def token_values(value_model, batch: Batch) -> torch.Tensor:
    """Per-token values from a sequence-classification model's backbone and head (a peft
    wrapper is looked through: its adapters live inside the wrapped modules)."""
    if hasattr(value_model, "get_base_model"):
        value_model = value_model.get_base_model()
    h = value_model.model(input_ids=batch.ids, attention_mask=batch.attn,
                          position_ids=batch.pos).last_hidden_state
    return value_model.score(h[:, batch.p_len - 1:-1]).squeeze(-1).float()


# --------------------------------------------------------------------------- the loop


def has_dropout(model) -> bool:
    """Whether train mode is stochastic (dropout layers, attention dropout, LoRA dropout)."""
    cfg = getattr(model, "config", None)
    if cfg is not None and float(getattr(cfg, "attention_dropout", 0) or 0) > 0:
        return True
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


@dataclass
class Rollout:
    """One PPO step's samples: the prompts, the decoded completions, the token batch, the
    scores (the reward minus the missing-EOS penalty), the proxy reward alone, and the frozen
    reference's log-probs of the sampled tokens."""

    prompts: list[str]
    texts: list[str]
    batch: Batch
    score: torch.Tensor  # [B]
    proxy: torch.Tensor  # [B]
    ref_logp: torch.Tensor  # [B, T]


@torch.no_grad()
def rollout(policy: TrainablePolicy, ref_model, value_model, reward: RewardFn,
            prompts: list[str], cfg: PPOConfig, ledger: Ledger, gen: torch.Generator,
            seed: int) -> Rollout:
    """Sample ``cfg.batch_size`` responses, score them, and charge their rollouts and this
    step's compute (policy, reference and value forwards, the update's passes) before the
    update runs."""
    model, tok, dev = policy.model, policy.tokenizer, policy.device
    batch_prompts = pick_prompts(prompts, cfg.batch_size, seed)
    ledger.charge("rollouts", len(batch_prompts))
    model.eval()
    x, am = left_pad([policy.context_ids(p) for p in batch_prompts], tok.pad_token_id)
    with meter.phase("ppo.sampling"):
        resp = sample(model, x.to(dev), am.to(dev), max_new_tokens=cfg.max_new_tokens,
                      temperature=cfg.temperature, eos_id=tok.eos_token_id,
                      pad_id=tok.pad_token_id, generator=gen).cpu()
    b = make_batch(x, am, resp, tok.pad_token_id, tok.eos_token_id)
    b = Batch(b.ids.to(dev), b.attn.to(dev), b.pos.to(dev), b.mask.to(dev), b.ended.to(dev),
              b.p_len)
    texts = [policy.completion_text(p, [t for t, m in zip(row, mrow) if m and
                                        t != tok.eos_token_id])
             for p, row, mrow in zip(batch_prompts, resp.tolist(), b.mask.tolist())]
    with meter.phase("ppo.scoring"):
        proxy = torch.tensor(reward(batch_prompts, texts), dtype=torch.float, device=dev)
    score = proxy - cfg.missing_eos_penalty * (~b.ended).float()
    n_tok = int(b.attn.sum())
    ledger.charge_all({"train_tokens": n_tok * cfg.epochs, "flops": inference_flops(
        n_params(model), n_tok * 3) + training_flops(
        n_params(model) + n_params(value_model), n_tok * cfg.epochs)})
    with meter.phase("ppo.reference"):
        ref_logp = no_grad_logprobs(ref_model, b, cfg)
    return Rollout(batch_prompts, texts, b, score, proxy, ref_logp)


@dataclass
class Targets:
    """What a PPO update fits on one rollout: the rollout policy's log-probs and values,
    the whitened advantages and the returns ([B, T] each), and the KL to the reference per
    sequence ([B])."""

    old_logp: torch.Tensor
    old_v: torch.Tensor
    adv: torch.Tensor
    returns: torch.Tensor
    kl: torch.Tensor


@torch.no_grad()
def advantages(ro: Rollout, old_logp: torch.Tensor, old_v: torch.Tensor, cfg: PPOConfig,
               kl_coef: float) -> Targets:
    """The KL-penalized rewards of a rollout turned into GAE advantages and returns."""
    mask = ro.batch.mask
    rewards = kl_penalized_rewards(ro.score, old_logp, ro.ref_logp, mask, kl_coef)
    if cfg.whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    adv, returns = gae(rewards, old_v, mask, cfg.gamma, cfg.lam)
    return Targets(old_logp, old_v, whiten(adv, mask), returns, kl_k1(old_logp, ro.ref_logp, mask))


@dataclass
class Optimizers:
    """The policy's and the value model's optimizers, and the parameters each one trains."""

    policy: torch.optim.Optimizer
    value: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]  # the policy's (adapters only with LoRA)


FirstPass = tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]  # ((logp, entropy), values)


def update(model, value_model, opt: Optimizers, b: Batch, t: Targets, cfg: PPOConfig,
           rng: np.random.Generator, first: FirstPass | None, step: int) -> dict[str, float]:
    """``cfg.epochs`` passes of clipped policy and value updates over minibatches of ``b``;
    ``first`` is the rollout policy's own forward pass to reuse for the first minibatch (or
    None). Returns the mean losses, clip fraction and entropy."""
    model.train()
    stats = {"pg_loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0, "entropy": 0.0}
    n, n_updates = b.ids.shape[0], 0
    mb = max(1, n // cfg.minibatches)
    for epoch in range(cfg.epochs):
        # a single minibatch's loss is a mean over the whole batch: order is irrelevant
        order = rng.permutation(n) if mb < n else np.arange(n)
        for s in range(0, len(order), mb):
            i = torch.tensor(order[s:s + mb], device=b.ids.device)
            sub = Batch(b.ids[i], b.attn[i], b.pos[i], b.mask[i], b.ended[i], b.p_len)
            opt.policy.zero_grad(set_to_none=True)
            opt.value.zero_grad(set_to_none=True)
            denom = sub.mask.sum().clamp(min=1)  # the minibatch's valid tokens
            rows = len(i) if cfg.micro_batch_size is None else cfg.micro_batch_size
            assert first is None or rows >= len(i), "the first pass covers the whole batch"
            pl_sum = vl_sum = cf_sum = ent_sum = 0.0
            # micro-batches: each adds its share of the minibatch's mean
            for c, part in zip(range(0, len(i), rows), micro_batches(sub, rows)):
                j = slice(c, c + rows)
                if first is not None and epoch == 0:
                    (logp, ent), v = first
                else:
                    logp, ent = token_logprobs(model, part, cfg.temperature)
                    v = token_values(value_model, part)
                pl, cf = policy_loss(logp, t.old_logp[i][j], t.adv[i][j], part.mask, cfg.clip,
                                     denom)
                vl = value_loss(v, t.old_v[i][j], t.returns[i][j], part.mask, cfg.value_clip,
                                denom)
                if not torch.isfinite(pl) or not torch.isfinite(vl):
                    raise NonFiniteError("ppo loss", step)
                (pl + vl).backward()  # separate networks: the sum just runs both backwards
                pl_sum, vl_sum, cf_sum = pl_sum + pl.item(), vl_sum + vl.item(), cf_sum + cf.item()
                ent_sum += float(masked_mean(ent.detach(), part.mask, denom))
            gn = torch.nn.utils.clip_grad_norm_(opt.trainable, cfg.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(value_model.parameters(), cfg.max_grad_norm)
            if not torch.isfinite(gn):
                raise NonFiniteError("policy gradient", step)
            opt.policy.step()
            opt.value.step()
            stats["pg_loss"] += pl_sum
            stats["value_loss"] += vl_sum
            stats["clipfrac"] += cf_sum
            stats["entropy"] += ent_sum
            n_updates += 1
    model.eval()
    return {k: v / n_updates for k, v in stats.items()}


def old_outputs(model, value_model, b: Batch, cfg: PPOConfig, reuse: bool
                ) -> tuple[torch.Tensor, torch.Tensor, FirstPass | None]:
    """The rollout policy's log-probs and values on its own batch, and the forward pass to
    reuse as the first update's (or None). With one minibatch and no dropout the first
    update's forward pass *is* the rollout policy's and value's forward on this batch, so its
    detached outputs serve as the old log-probs and values (two forward passes fewer per
    step, same numbers)."""
    if reuse:
        model.train()
        first = token_logprobs(model, b, cfg.temperature), token_values(value_model, b)
        return first[0][0].detach(), first[1].detach(), first
    with torch.no_grad():
        return (no_grad_logprobs(model, b, cfg), torch.cat([
            token_values(value_model, part) for part in micro_batches(b, cfg.micro_batch_size)]),
            None)


def micro_batches(b: Batch, rows: int | None) -> list[Batch]:
    """``b`` in consecutive parts of ``rows`` rows (all of it for None): the rows of one
    batch share its padded width, so the parts' outputs concatenate back."""
    n = b.ids.shape[0]
    step = n if rows is None else rows
    return [Batch(b.ids[c:c + step], b.attn[c:c + step], b.pos[c:c + step], b.mask[c:c + step],
                  b.ended[c:c + step], b.p_len) for c in range(0, n, step)]


@torch.no_grad()
def no_grad_logprobs(model, b: Batch, cfg: PPOConfig) -> torch.Tensor:
    """Response-token log-probs of ``model`` on ``b`` in micro-batches (the rollout policy's,
    the frozen reference's), so no forward holds a whole batch's [B, T, V] logits."""
    return torch.cat([token_logprobs(model, part, cfg.temperature)[0]
                      for part in micro_batches(b, cfg.micro_batch_size)])


def ppo_loop(policy: TrainablePolicy, ref_model, value_model, reward: RewardFn,
             prompts: list[str], cfg: PPOConfig, ledger: Ledger, *, seed: int, steps: int,
             on_step: Callable[[int, list[str], list[str], dict], None] | None = None,
             progress: bool = False) -> list[dict[str, float]]:
    """Run ``steps`` PPO iterations in place on ``policy.model`` and ``value_model``:
    rollout, advantages, update. ``reward(prompts, completions)`` is the proxy reward (a
    reward model, or any function in tests). Returns one stats dict per step."""
    model = policy.model
    trainable = [p for p in model.parameters() if p.requires_grad]  # adapters only with LoRA
    opt = Optimizers(torch.optim.AdamW(trainable, lr=cfg.lr, eps=1e-5),
                     torch.optim.AdamW([p for p in value_model.parameters() if p.requires_grad],
                                       lr=cfg.value_lr, eps=1e-5), trainable)
    kl_ctl = AdaptiveKL(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
    # ``seed`` is the loop's root: the samples, each step's prompts and minibatch order
    gen = torch.Generator().manual_seed(derive_seed(seed, "ppo.samples"))
    ref_model.eval()
    whole = cfg.micro_batch_size is None or cfg.micro_batch_size >= cfg.batch_size
    reuse = cfg.minibatches == 1 and whole and not has_dropout(model) and \
        not has_dropout(value_model)
    history = []
    it = tqdm(range(steps), desc="ppo", disable=not progress, leave=False)
    for step in it:
        ro = rollout(policy, ref_model, value_model, reward, prompts, cfg, ledger, gen,
                     derive_seed(seed, "ppo.batch", step))
        with meter.phase("ppo.update"):  # the old log-probs and values included
            old_logp, old_v, first = old_outputs(model, value_model, ro.batch, cfg, reuse)
            kl_coef = kl_ctl.value
            targets = advantages(ro, old_logp, old_v, cfg, kl_coef)
            stats = update(model, value_model, opt, ro.batch, targets, cfg,
                           np.random.default_rng(derive_seed(seed, "ppo.minibatch", step)),
                           first, step)
            del first  # the first pass's graph, so that what the update freed can go back
            meter.release_memory(collect=False)
        kl_mean = float(targets.kl.mean())
        if cfg.adaptive_kl:
            kl_ctl.update(kl_mean, len(ro.prompts))
        stats.update(proxy_reward=float(ro.proxy.mean()), kl=kl_mean, kl_coef=kl_coef,
                     response_length=float(ro.batch.mask.sum(-1).mean()),
                     no_eos_frac=float((~ro.batch.ended).float().mean()))
        history.append(stats)
        if on_step is not None:
            on_step(step, ro.prompts, ro.texts, stats)
        it.set_postfix(proxy=f"{stats['proxy_reward']:.2f}", kl=f"{kl_mean:.2f}")
    return history


def ppo_round(policy: TrainablePolicy, start: Start, pairs: list[dict[str, str]],
              ctx: TrainContext, cfg: PPOConfig, rnd: int, curve: str) -> RewardModel:
    """One RLHF round, shared by ppo and rlaif: a reward model trained on ``pairs`` from the
    start's backbone, a value model initialized from it (N+), then ``cfg.steps`` PPO steps in
    place on ``policy`` against it with a KL penalty to the start's frozen reference. With LoRA
    the policy gets fresh adapters each round (merged at its end), and in the first round,
    where the policy still equals the reference, the reference is the policy with its
    adapters off instead of a second copy. The curve ``curve`` gets one point per step, its
    step counted across rounds and its round recorded, each also streamed to the matrix's
    tracker. Returns the round's reward model."""
    prompts = feedback_prompts(ctx.scenario.train_prompts, cfg.holdout_prompts)
    rm = train_reward_model(start.path, policy.tokenizer, pairs, ctx, cfg,
                            stage=f"{curve}_reward_model_{rnd}")
    value_model = checkpointed(with_adapters(copy.deepcopy(rm.model), cfg, "SEQ_CLS"),
                               cfg.activation_checkpointing)
    value_model.train()
    ref = start.reference.model  # frozen: the shared SFT model is never trained
    if cfg.lora:
        policy.model = with_adapters(policy.model, cfg)
        if rnd == 0:
            ref = AdaptersOff(policy.model)
    checkpointed(policy.model, cfg.activation_checkpointing)
    offset = rnd * cfg.steps

    with curve_logger(ctx.tracking, curve) as track:  # the matrix's report_to, if any
        def on_step(step: int, prompts: list[str], texts: list[str], stats: dict) -> None:
            ctx.monitor_gold(curve, offset + step, prompts, texts, round=rnd, **stats)
            track(ctx.curves[curve][-1])  # the point just recorded, as recorded

        ppo_loop(policy, ref, value_model, rm.reward, prompts, cfg,
                 ctx.ledger, seed=derive_seed(ctx.seed, "ppo.round", rnd), steps=cfg.steps,
                 on_step=on_step, progress=ctx.progress)
    policy.model = checkpointed(merged(policy.model), False)
    del value_model
    meter.release_memory()
    # the round's reward model against gold on the start's samples and on the samples of the
    # policy it steered: how far off its training distribution it is, round by round (the
    # claims preset's claim 3); measurement only, written to the curve and seen by no method
    if cfg.rm_monitor_prompts == 0:
        return rm
    pick = np.random.default_rng(derive_seed(ctx.seed, "ppo.rm_monitor", rnd)).permutation(
        len(prompts))[:cfg.rm_monitor_prompts]
    name = f"{curve}_rm_monitor"
    point = ctx.monitor_reward_model(name, rnd, rm.reward, [prompts[i] for i in pick],
                                     {"start": start.reference, "policy": policy},
                                     seed=derive_seed(ctx.seed, "ppo.rm_monitor.samples", rnd),
                                     max_new_tokens=cfg.max_new_tokens)
    if point is not None:  # streamed like every curve (report_to)
        with curve_logger(ctx.tracking, name) as track:
            track(point)
    return rm


class PPO:
    name = "ppo"
    description = "PPO-RLHF: reward model on ranked comparisons, then PPO with a KL penalty"
    Config = PPOConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: PPOConfig) -> Trained:
        policy = start.trainable()
        pairs: list[dict[str, str]] = []  # each round's reward model trains on every round's
        for rnd, labelled in feedback_rounds(ctx, start, policy, config):
            pairs += labelled
            rm = ppo_round(policy, start, pairs, ctx, config, rnd, curve="ppo")
        return Trained(policy=policy, reward_fn=rm.reward, held_out_prompts=config.holdout_prompts)
