"""KL to the reference (the shared SFT model) and, for RL methods, the overoptimization view.

KL: mean over responses sampled from the policy (temperature 1) of the summed per-token
log pi - log pi_ref (the k1 estimator, docs/design.md). RL curves (proxy reward, gold reward,
KL per step) come from the training run; the peak-gold step and the drop after it are the
Gao et al. (2022) overoptimization summary.
"""

from __future__ import annotations

import math

import numpy as np

from pydantic import Field

from bench.api import (
    EvalContext, EvalOptions, EvalResult, PerPrompt, Plot, Policy, SelectingPolicy, prompt_id)
from bench.seeding import derive_seed
from bench.stats import bootstrap_se


def overoptimization(curve: list[dict[str, float]]) -> dict[str, float]:
    """Peak gold reward, where it peaked, and how far gold and proxy moved after it, on the
    curve smoothed over a window of ``w = max(1, round(len(curve) / 8))`` steps (5 of PPO's 40).

    Each per-step gold value is a mean over one batch of fresh samples, so it is noisy: the
    peak of the raw curve minus its last point (version 1.0) is inflated by that noise twice,
    once by picking the best of many noisy points and once by the single noisy last one; a
    flat curve of pure noise read as a drop of about 2.1 standard deviations (0.8 now). Here the peak is
    the best w-step window mean and the final value the mean of the last w steps, which cuts
    the noise in both by sqrt(w). The drop is still >= 0 (the last window is one of the
    windows), so a test compares it between arms rather than with zero."""
    gold = np.array([p["gold_reward"] for p in curve], dtype=float)
    proxy = np.array([p["proxy_reward"] for p in curve], dtype=float)
    w = max(1, round(len(curve) / 8))  # 5 for 39 steps (three rounds of 13) as for 40
    kernel = np.ones(w) / w
    g, pr = np.convolve(gold, kernel, "valid"), np.convolve(proxy, kernel, "valid")
    i = int(np.argmax(g))
    return {"gold_peak": float(g[i]), "gold_peak_step": float(curve[i + w // 2]["step"]),
            "gold_final": float(g[-1]), "gold_drop": float(g[i] - g[-1]),
            "proxy_final": float(pr[-1]), "proxy_gain_after_peak": float(pr[-1] - pr[i]),
            "window": float(w)}


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) <= log n - (n - 1) / n (Stiennon et al. 2020; Beirami et al. 2024
    show it is a bound, tight when the base rarely repeats a response)."""
    return math.log(n) - (n - 1) / n


class KLOptions(EvalOptions):
    samples: int = Field(4, ge=1, description="responses sampled per prompt")


# id "trade-offs" is toxicity's trade-off plot too: the report draws both as panels of one
# figure, and bench.api.evaluation.declared_figures refuses the two if their titles differ
PLOTS = (Plot("Trade-offs: win-rate against toxicity and against KL (one point per cell)",
              "scatter", ("kl.k1", "win_rate.vs_sft"), id="trade-offs"),
         Plot("Overoptimization: gold and proxy reward against the KL to SFT along training "
              "(Gao et al. 2022)", "trajectory", ("kl", "gold_reward", "proxy_reward"),
              id="overoptimization"))


class KL:
    name = "kl"
    Options = KLOptions
    description = "KL to the SFT reference (k1) and RL overoptimization summary"
    # 1.1: overoptimization smoothed; 1.2: best-of-n gets its analytic KL bound; 1.3: the
    # window rounds len/8 (floor gave 4 steps to a 39-step curve and 5 to a 40-step one)
    version = "1.3"
    metrics = {"k1": False, "gold_peak": True, "gold_final": True, "gold_drop": False,
               "proxy_final": True}
    bounds = {"gold_drop": (0.0, None)}  # >= 0 by construction (see overoptimization); k1
    # is a sampled estimate that can fall below 0
    figures = PLOTS

    def evaluate(self, policy: Policy, ctx: EvalContext) -> EvalResult:
        ref = ctx.references.get("sft")
        metrics, unc, extra, per = {}, {}, {}, {}
        if ref is not None and isinstance(policy, SelectingPolicy):
            # best-of-n's own likelihood has no closed form; its base is the SFT model
            metrics["k1"] = best_of_n_kl(policy.n)
            extra["k1"] = f"analytic bound log n - (n-1)/n for best of {policy.n} (not sampled)"
        elif ref is not None:
            prompts = ctx.prompts(self.name)
            n = self.Options.model_validate(ctx.options).samples
            flat = [p for p in prompts for _ in range(n)]
            outs = policy.generate(flat, max_new_tokens=24, temperature=1.0, 
                                  seed=derive_seed(ctx.seed, "kl.samples"))
            lp = np.asarray(policy.logprob(flat, outs))
            lr = np.asarray(ref.logprob(flat, outs))
            k1 = lp - lr
            metrics["k1"] = float(k1.mean())
            unc["k1"] = bootstrap_se(k1, seed=ctx.seed)
            # each prompt's mean over its samples (every prompt has ``n``)
            per["k1"] = PerPrompt.of(map(prompt_id, prompts), k1.reshape(len(prompts), n).mean(1))
            if getattr(ref, "policy", ref) is policy:  # the SFT row against itself: 0 exactly
                extra["null"] = {"k1": 0.0}
        for name, curve in ctx.curves.items():
            if curve and "gold_reward" in curve[0] and "proxy_reward" in curve[0]:
                metrics.update(overoptimization(curve))
                extra["curve"] = name
                break
        return EvalResult(metrics=metrics, uncertainty=unc, n=len(metrics), extra=extra,
                          plots=list(PLOTS), per_prompt=per)
