"""PPO's math, each piece with known-answer tests (tests/test_ppo.py): pure functions on
tensors (masked means, whitening, GAE, the clipped losses, KL estimators and the KL-penalized
reward), Ziegler et al.'s adaptive KL controller, and the token batch of prompts and sampled
responses they work on. methods/ppo.py runs them; N+ is Huang et al. 2024, "The N+
implementation details of RLHF with PPO"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor,
                denom: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over the valid entries; with ``denom`` (the valid entries of a whole
    minibatch) this part's share of that minibatch's mean, so the shares of its micro-batches
    add up to it (gradient accumulation that is the same update)."""
    return (x * mask).sum() / (mask.sum().clamp(min=1) if denom is None else denom)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalize over the valid entries (N+ #"advantage whitening"); unbiased variance."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) over response tokens.

    rewards, values, mask: [B, T]; mask is 1 on valid tokens (a prefix of each row). The value
    after the last valid token is 0 (the episode ends). Returns (advantages, returns)."""
    values = values * mask
    rewards = rewards * mask
    b, t = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)
    for i in reversed(range(t)):
        next_v = values[:, i + 1] if i + 1 < t else torch.zeros_like(last)
        delta = rewards[:, i] + gamma * next_v - values[:, i]
        last = delta + gamma * lam * last
        last = last * mask[:, i]
        adv[:, i] = last
    return adv, (adv + values) * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
                mask: torch.Tensor, clip: float, denom: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017), token-level mean (``denom``: see
    :func:`masked_mean`). Returns (loss, fraction of tokens where the clip was active)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, denom)
    clipfrac = masked_mean((clipped > unclipped).float(), mask, denom)
    return loss, clipfrac


def value_loss(v: torch.Tensor, old_v: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float, denom: torch.Tensor | None = None) -> torch.Tensor:
    """Clipped value loss (N+ #"value function loss clipping"): 0.5 * max of squared errors."""
    v_clipped = old_v + torch.clamp(v - old_v, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((v - returns) ** 2, (v_clipped - returns) ** 2), mask,
                             denom)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence KL estimate: sum over tokens of log pi - log pi_ref (unbiased, can be < 0)."""
    return ((logp - ref_logp) * mask).sum(-1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator per sequence: sum of (r - 1) - log r with r = pi_ref / pi; >= 0."""
    log_r = ref_logp - logp
    return ((torch.exp(log_r) - 1 - log_r) * mask).sum(-1)


def kl_penalized_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token reward: -kl_coef * (log pi - log pi_ref) on every token, plus the reward
    model's score on the last valid token (Ziegler et al. 2019)."""
    r = -kl_coef * (logp - ref_logp) * mask
    last = (mask.sum(-1) - 1).clamp(min=0).long()
    return r.scatter_add(1, last[:, None], score[:, None].to(r.dtype))


@dataclass
class AdaptiveKL:
    """Ziegler et al. 2019's proportional controller: nudges the coefficient so the observed
    KL tracks ``target``; the error is clipped to +-0.2 per update."""

    value: float
    target: float
    horizon: float

    def update(self, kl: float, n_steps: int) -> float:
        error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


# --------------------------------------------------------------------------- the token batch


@dataclass
class Batch:
    """Prompts and their sampled responses as one padded token batch, with the masks PPO's
    losses read (:func:`make_batch`)."""

    ids: torch.Tensor  # [B, P+T] left-padded prompt then response
    attn: torch.Tensor  # [B, P+T]
    pos: torch.Tensor  # [B, P+T]
    mask: torch.Tensor  # [B, T] valid response tokens (EOS included)
    ended: torch.Tensor  # [B] response produced EOS
    p_len: int


def make_batch(prompt: torch.Tensor, pattn: torch.Tensor, resp: torch.Tensor, pad_id: int,
               eos_id: int) -> Batch:
    """Join left-padded prompts [B, P] (with their mask) and sampled responses [B, T]."""
    b, t = resp.shape
    p_len = prompt.shape[1]
    is_eos = resp == eos_id
    ended = is_eos.any(-1)
    first_eos = torch.where(ended, is_eos.float().argmax(-1), torch.full((b,), t))
    mask = (torch.arange(t)[None] <= first_eos[:, None]).long()  # up to and including EOS
    attn = torch.cat([pattn, mask], 1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return Batch(torch.cat([prompt, resp.masked_fill(mask == 0, pad_id)], 1), attn, pos,
                 mask.float(), ended, p_len)
