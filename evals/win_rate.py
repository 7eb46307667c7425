"""Win-rate against references (the shared SFT model and the base model), judged by the
scenario's gold judge, else the method's reward model; raw and length-controlled.

Length control follows AlpacaEval 2.0 without the instruction-difficulty term: a logistic
regression of the preference on tanh(standardized length difference), predicted at zero length
difference (Dubois et al. 2024).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np

from pydantic import Field

from bench.api import (
    EvalContext, EvalOptions, EvalResult, Judge, PerPrompt, Plot, Policy, World, prompt_id)
from bench.api.evaluation import LengthPairs
from bench.seeding import derive_seed
from bench.stats import bootstrap_ci, bootstrap_se, cluster_bootstrap_se


def length_controlled(pref: np.ndarray, len_a: np.ndarray, len_b: np.ndarray) -> float:
    """Win-rate at zero length difference. ``pref`` in [0, 1] (ties 0.5) is the Binomial GLM's
    fractional response; with no length variation it is the raw win-rate."""
    import statsmodels.api as sm

    d = len_a.astype(float) - len_b.astype(float)
    if len(pref) < 3 or d.std() == 0:
        return float(pref.mean())
    x = np.tanh(d / d.std())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.GLM(pref, sm.add_constant(x), family=sm.families.Binomial()).fit()
        except Exception:  # perfect separation: no length model can be fitted
            return float(pref.mean())
    b0 = float(fit.params[0])
    if not math.isfinite(b0):
        return float(pref.mean())
    # a near-separated fit (a bootstrap resample of a few prompts) can give b0 below -709,
    # where exp(-b0) overflows: the rate there is 0 to double precision
    return 1.0 / (1.0 + math.exp(-b0)) if b0 > -700 else 0.0


LC_WARN = 0.10  # AlpacaEval 2 warns when length control moves a win-rate more than 10 points


class _RewardJudge:
    def __init__(self, reward):
        self.reward = reward

    def prefer(self, prompts, a, b):
        ra, rb = self.reward(prompts, a), self.reward(prompts, b)
        return [1.0 if x > y else 0.0 if y > x else 0.5 for x, y in zip(ra, rb)]


class WinRateOptions(EvalOptions):
    samples_per_prompt: int = Field(4, ge=1, description="method/reference pairs per prompt")
    temperature: float = Field(0.7, gt=0, description="sampling temperature of both sides")
    max_new_tokens: int = Field(24, ge=1, description="sample length limit")
    references: list[Literal["sft", "base", "large_base"]] = Field(
        default_factory=lambda: ["sft", "base"], min_length=1,
        description="which references to compare against (each costs one set of samples); "
        "large_base is the micro-world's wider base (scenario option reference_scale)")

    def check_world(self, world: World) -> None:
        if "large_base" in self.references and "large_base" not in world.reference_models:
            raise ValueError("references names large_base, which this scenario does not "
                             "pretrain; set scenario.options.reference_scale or drop it")


PLOTS = (Plot("Win-rate against the swept budget", "sweep", ("win_rate.vs_sft",),
              id="budget-sweep"),)


class WinRate:
    name = "win_rate"
    Options = WinRateOptions
    description = "win-rate vs the SFT and base models (gold judge in the micro-world), raw + LC"
    # 1.1: the LC rates carry an SE and an A/A null; 1.2: LC gap + warning; 1.3: every judged
    # pair is stored (``extra["pairs"]``) so the report can fit prompt difficulty across cells;
    # 1.4: the large_base reference (metrics unchanged where it is not asked for)
    version = "1.4"
    metrics = {"vs_sft": True, "vs_base": True, "lc_vs_sft": True, "lc_vs_base": True,
               "vs_large_base": True, "lc_vs_large_base": True}
    bounds = {m: (0.0, 1.0) for m in metrics}
    figures = PLOTS
    ranking_metric = "vs_sft"  # the gold judge's preference against the shared SFT model
    length_pairs = LengthPairs()  # extra["pairs"][vs_REF], extra["prompt_ids"], lc_vs_REF

    def judge(self, ctx: EvalContext) -> tuple[Judge, str]:
        if ctx.world.gold_judge is not None:  # "proxy" when it is the labeler itself
            return ctx.world.gold_judge, "proxy" if ctx.world.judge_is_labeler else "gold"
        if ctx.trained is not None and ctx.trained.reward_fn is not None:
            return _RewardJudge(ctx.trained.reward_fn), "reward_model"
        raise ValueError("win_rate needs a judge: this scenario has no gold judge and the method "
                         "trained no reward model")

    def evaluate(self, policy: Policy, ctx: EvalContext) -> EvalResult:
        o = self.Options.model_validate(ctx.options)
        warnings_: list[str] = []
        n_samples, temperature, max_new = o.samples_per_prompt, o.temperature, o.max_new_tokens
        prompts = ctx.prompts(self.name)
        flat = [p for p in prompts for _ in range(n_samples)]
        judge, judge_name = self.judge(ctx)
        if judge_name == "proxy":
            warnings_.append("win-rates are judged by the online labeler itself "
                             "(allow_proxy_judge): they are the proxy's, not gold, and a "
                             "method that learned the labeler's quirks wins them")
        if "large_base" in o.references and "large_base" not in ctx.references:
            raise ValueError("win_rate: references names large_base, which this scenario does "
                             "not pretrain; set scenario.options.reference_scale or drop it")
        mine = policy.generate(flat, max_new_tokens=max_new, temperature=temperature,
                               seed=derive_seed(ctx.seed, "win_rate.policy"))
        res = EvalResult(metrics={}, n=len(prompts), extra={
            "judge": judge_name, "ci95": {}, "samples_per_prompt": n_samples,
            "temperature": temperature}, plots=list(PLOTS), warnings=warnings_)
        # the prompts' identities, so pairs and per-prompt values from different cells are
        # matched by prompt
        ids = [prompt_id(p) for p in prompts]
        for ref_name, ref in ctx.references.items():
            if ref_name in o.references:
                self.compare(policy, ref_name, ref, judge, flat, mine, o, ctx, res, ids)
        res.extra["mean_length"] = float(np.mean([len(t.split()) for t in mine]))
        res.extra["prompt_ids"] = ids
        return res

    def compare(self, policy: Policy, ref_name: str, ref: Policy, judge: Judge, flat: list[str],
                mine: list[str], o: WinRateOptions, ctx: EvalContext, res: EvalResult,
                ids: list[str]) -> None:
        """The policy's answers ``mine`` to ``flat`` (each prompt ``samples_per_prompt``
        times) against reference ``ref_name``'s: the raw and length-controlled rates with
        their standard errors, the per-prompt rates under the prompts' ``ids``, the judged
        pairs and, against sft, the sample rows (into ``res``)."""
        n_samples, metrics, unc, extra = o.samples_per_prompt, res.metrics, res.uncertainty, \
            res.extra
        theirs = ref.generate(flat, max_new_tokens=o.max_new_tokens, temperature=o.temperature,
                              seed=derive_seed(ctx.seed, "win_rate.reference"))
        pref = np.asarray(judge.prefer(flat, mine, theirs), dtype=float)
        per_prompt = pref.reshape(len(flat) // n_samples, n_samples).mean(1)
        la = np.array([len(t.split()) for t in mine])
        lb = np.array([len(t.split()) for t in theirs])
        name = f"vs_{ref_name}"
        if getattr(ref, "policy", ref) is policy:  # the reference itself: an A/A check
            extra.setdefault("null", {}).update({name: 0.5, f"lc_{name}": 0.5})
        metrics[name] = float(pref.mean())
        # each prompt's mean over its samples (every prompt has ``samples_per_prompt``)
        res.per_prompt[name] = PerPrompt.of(ids, per_prompt)
        unc[name] = bootstrap_se(per_prompt, seed=ctx.seed)
        extra["ci95"][name] = bootstrap_ci(per_prompt, seed=ctx.seed)
        metrics[f"lc_{name}"] = length_controlled(pref, la, lb)
        # the LC rate's own noise, resampling prompts whole (100 refits of its GLM)
        unc[f"lc_{name}"] = cluster_bootstrap_se(
            lambda i: length_controlled(pref[i], la[i], lb[i]), len(flat) // n_samples,
            n_samples, n_boot=100, seed=ctx.seed)
        gap = metrics[f"lc_{name}"] - metrics[name]
        extra.setdefault("lc_gap", {})[name] = gap
        aa = name in extra.get("null", {})  # against itself: any gap is noise
        if not aa and abs(gap) > LC_WARN and abs(gap) > 2 * unc[f"lc_{name}"]:
            # AlpacaEval 2's safeguard, past the LC rate's own noise: a length model that
            # moves the rate this far explains more than length, or is fitted on too little
            res.warnings.append(f"lc_{name} {metrics[f'lc_{name}']:.3f} is {gap:+.3f} from the "
                                f"raw {metrics[name]:.3f}, more than {LC_WARN:.2f}: read the raw "
                                f"rate, or give the eval more prompts")
        extra[f"mean_length_{ref_name}"] = float(lb.mean())
        # every judged pair (bench.api.evaluation.JudgedPairs), for the report's length
        # control fitted jointly over the matrix's cells (declared by ``length_pairs``)
        extra.setdefault("pairs", {})[name] = {
            "prompt": [i // n_samples for i in range(len(flat))],
            "pref": pref.tolist(), "len_method": la.tolist(), "len_reference": lb.tolist()}
        if ref_name == "sft":
            attrs = ctx.world.attributes or (lambda p, r: {})
            res.rows = [{"prompt": flat[i], "method": mine[i], "reference": theirs[i],
                         "p_method": float(pref[i]), "method_attributes": attrs(flat[i], mine[i]),
                         "reference_attributes": attrs(flat[i], theirs[i])}
                        for i in range(0, min(len(flat), 48), n_samples)]
