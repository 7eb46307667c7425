"""Agreement among the labelers, and of the learned judges with them (docs/design.md).

Every labeler of the panel labels the same pairs (two samples of the policy under test per
prompt). Reported: pairwise inter-labeler agreement, leave-one-out agreement with the majority
of the others (AlpacaEval style), Fleiss' kappa (statsmodels) and Krippendorff's alpha (the
krippendorff package), both nominal; the reward model's accuracy against labelers and the gold
judge next to that labeler-labeler ceiling; and the AI judge's agreement with the panel majority,
broken down by what the pair differs in. Ties and skips are excluded and counted.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from pydantic import Field

from bench.api import EvalContext, EvalOptions, EvalResult, PerPrompt, Plot, Policy, prompt_id
from bench.seeding import derive_seed
from bench.resample import cluster_agreement


def binarize(labels: np.ndarray) -> np.ndarray:
    """1.0 (a), 0.0 (b) kept; ties (0.5) and skips (nan) become nan."""
    out = np.asarray(labels, dtype=float).copy()
    out[(out != 0.0) & (out != 1.0)] = np.nan
    return out


def pairwise_agreement(labels: np.ndarray) -> tuple[float, int, np.ndarray]:
    """labels [items, raters] in {0, 1, nan}. Fraction of agreeing rater pairs over all items,
    the number of compared pairs, and the rater x rater agreement matrix."""
    x = binarize(labels)
    r = x.shape[1]
    agree = np.full((r, r), np.nan)
    tot_a, tot_n = 0.0, 0
    for i in range(r):
        for j in range(r):
            both = ~np.isnan(x[:, i]) & ~np.isnan(x[:, j])
            if both.any():
                agree[i, j] = float((x[both, i] == x[both, j]).mean())
            if j > i:
                tot_a += float((x[both, i] == x[both, j]).sum())
                tot_n += int(both.sum())
    return (tot_a / tot_n if tot_n else float("nan")), tot_n, agree


def leave_one_out(labels: np.ndarray) -> float:
    """Mean over raters of agreement with the majority of the other raters (majority ties and
    the rater's own missing labels excluded)."""
    x = binarize(labels)
    hits, n = 0.0, 0
    for j in range(x.shape[1]):
        others = np.delete(x, j, axis=1)
        ones, zeros = np.nansum(others == 1, 1), np.nansum(others == 0, 1)
        ok = ~np.isnan(x[:, j]) & (ones != zeros)
        maj = (ones > zeros).astype(float)
        hits += float((x[ok, j] == maj[ok]).sum())
        n += int(ok.sum())
    return hits / n if n else float("nan")


def fleiss(labels: np.ndarray) -> float:
    """Fleiss' kappa over the items every rater labeled (statsmodels)."""
    from statsmodels.stats.inter_rater import fleiss_kappa
    x = binarize(labels)
    full = x[~np.isnan(x).any(1)]
    if len(full) == 0:
        return float("nan")
    table = np.stack([(full == 1).sum(1), (full == 0).sum(1)], 1)
    return float(fleiss_kappa(table, method="fleiss"))


def kalpha(labels: np.ndarray) -> float:
    """Krippendorff's alpha, nominal (the krippendorff package); missing labels allowed."""
    import krippendorff
    x = binarize(labels)
    if np.all(np.isnan(x)) or len(np.unique(x[~np.isnan(x)])) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=x.T, level_of_measurement="nominal"))


def majority(labels: np.ndarray) -> np.ndarray:
    x = binarize(labels)
    ones, zeros = np.nansum(x == 1, 1), np.nansum(x == 0, 1)
    return np.where(ones > zeros, 1.0, np.where(zeros > ones, 0.0, np.nan))


def differs_in(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a["truth"] != b["truth"]:
        return "truth"
    if (a["toxicity"] > 0) != (b["toxicity"] > 0):
        return "toxicity"
    if a["length"] != b["length"]:
        return "length"
    return "nothing"


def rm_order(reward_fn, prompts: list[str], a: list[str], b: list[str]) -> np.ndarray:
    """1.0 where the reward model prefers a, 0.0 where b, nan on a tie."""
    ra, rb = np.asarray(reward_fn(prompts, a)), np.asarray(reward_fn(prompts, b))
    return np.where(ra > rb, 1.0, np.where(rb > ra, 0.0, np.nan))


def rm_gold_hits(rm: np.ndarray, gold, prompts: list[str], a: list[str], b: list[str]
                 ) -> PerPrompt:
    """1.0 where the reward model's order ``rm`` (:func:`rm_order`) is the gold judge's, 0.0
    where not, each with its prompt's id; pairs that either one ties are left out."""
    g = np.asarray(gold.prefer(prompts, a, b))
    ok = (g != 0.5) & ~np.isnan(rm)
    return PerPrompt.of((prompt_id(prompts[i]) for i in np.flatnonzero(ok)),
                        (rm[ok] == g[ok]).astype(float))


def clustered_se(values: Sequence[float], prompts: Sequence[str], seed: int) -> float:
    """The standard error of a mean of judgments that come in prompts: the judgments on one
    prompt (its pairs, and every labeler's label on each) are resampled together
    (:func:`bench.resample.cluster_agreement`), since they share the prompt and, for the
    labels, the pair; counting them as independent made a 16-labeler panel's rm_vs_labelers
    look about five times as precise as its prompts allow. 0 where it cannot be estimated (fewer
    than two prompts, or every prompt's judgments alike)."""
    se = cluster_agreement(values, prompts, seed=seed).se
    return se if math.isfinite(se) else 0.0


def put(name: str, hits: PerPrompt, seed: int, metrics: dict[str, float],
        unc: dict[str, float], per: dict[str, PerPrompt]) -> None:
    """One agreement metric from its hits: the mean, its standard error over prompts
    (:func:`clustered_se`) and the hits themselves, each under its prompt's id (none where
    no pair counted: the metric is NaN)."""
    metrics[name] = hits.mean()
    unc[name] = clustered_se(hits.values, hits.prompts, seed)
    if hits.values:
        per[name] = hits


def rm_on_start(reward_fn, gold, start: Policy, flat: list[str], seed: int, held: str | None
                ) -> tuple[dict[str, float], dict[str, float], dict[str, PerPrompt]]:
    """The reward model against gold on samples of the SFT model, whose samples it was trained
    on (held-out prompts): against rm_vs_gold on the policy's own samples, how far the policy
    it steers has left its training distribution (the claims preset's claim 4); the same seeds for
    every cell, so paired over them. ``held``: the prompt family the method's feedback left
    out (a regular expression), whose pairs are also reported apart from the rest
    (``held_out``, ``seen_families``: both on SFT samples), where the prompts hold any."""
    sa = start.generate(flat, max_new_tokens=24, temperature=1.0,
                        seed=derive_seed(seed, "agreement.a"))
    sb = start.generate(flat, max_new_tokens=24, temperature=1.0,
                        seed=derive_seed(seed, "agreement.b"))
    rm = rm_order(reward_fn, flat, sa, sb)
    metrics: dict[str, float] = {}
    unc: dict[str, float] = {}
    per: dict[str, PerPrompt] = {}
    put("rm_vs_gold.sft_samples", rm_gold_hits(rm, gold, flat, sa, sb), seed, metrics, unc, per)
    if held:
        out = np.array([re.search(held, p) is not None for p in flat])
        for name, keep in (("held_out", out), ("seen_families", ~out)):
            i = np.flatnonzero(keep)
            hits = rm_gold_hits(rm[i], gold, [flat[j] for j in i], [sa[j] for j in i],
                                [sb[j] for j in i])
            if hits.values:  # none where the eval's prompts miss the family
                put(f"rm_vs_gold.{name}", hits, seed, metrics, unc, per)
    return metrics, unc, per


PLOTS = (Plot("Labeler agreement", "matrix", key="labeler_matrix", id="labeler-agreement"),
         Plot("Labeler agreement", "bars", ("labeler_agreement.rm_vs_labelers",
                                            "labeler_agreement.ai_judge_vs_majority",
                                            "labeler_agreement.inter_labeler"),
              id="labeler-agreement"))


def held_out_accuracy(pairs: list[dict[str, Any]], ctx: EvalContext,
                      metrics: dict[str, float], unc: dict[str, float],
                      extra: dict[str, Any], per: dict[str, PerPrompt]) -> None:
    """Accuracy on the scenario's held-out preference pairs, the labels of its data (the
    measure of RewardBench, Lambert et al. 2024): ``rm_accuracy``, the cell's reward model
    (chosen scored above rejected; a tie counts half); ``judge_accuracy``, the evaluation
    judge; ``ai_judge_accuracy``, the method's AI judge. Standard errors resample prompts
    whole: the pairs of one prompt are not independent evidence."""
    prompts = [p["prompt"] for p in pairs]
    chosen, rejected = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]
    judges: dict[str, Any] = {}
    if ctx.trained is not None and ctx.trained.reward_fn is not None:
        judges["rm_accuracy"] = ctx.trained.reward_fn
    if ctx.world.gold_judge is not None:
        judges["judge_accuracy"] = ctx.world.gold_judge
    if ctx.trained is not None and ctx.trained.make_ai_judge is not None:
        judges["ai_judge_accuracy"] = ctx.trained.make_ai_judge(ctx.ledger)
    for name, judge in judges.items():
        if hasattr(judge, "prefer"):
            p = np.asarray(judge.prefer(prompts, chosen, rejected), dtype=float)
            hits = np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))
        else:  # a reward function
            rc = np.asarray(judge(prompts, chosen), dtype=float)
            rr = np.asarray(judge(prompts, rejected), dtype=float)
            hits = (rc > rr) + 0.5 * (rc == rr)
        metrics[name] = float(hits.mean())
        per[name] = PerPrompt.of(map(prompt_id, prompts), hits)
        unc[name] = clustered_se(per[name].values, per[name].prompts, ctx.seed)
    extra["held_out_pairs"] = len(pairs)
    extra["held_out_prompts"] = len(set(prompts))


class AgreementOptions(EvalOptions):
    pairs_per_prompt: int = Field(4, ge=1, description="sample pairs labeled per prompt")


class LabelerAgreement:
    name = "labeler_agreement"
    Options = AgreementOptions
    description = "panel agreement (pairwise, LOO, Fleiss, Krippendorff); RM and AI judge vs panel"
    # 1.1: rm_vs_gold carries its SE, and its slice sft_samples (the reward model on the SFT
    # model's samples, the distribution it was trained on); 1.2: where the method held a
    # prompt family out of its feedback, the slices held_out and seen_families (SFT samples)
    # 1.3: on a scenario's held-out preference pairs, rm_accuracy, judge_accuracy and
    # ai_judge_accuracy; the panel's metrics only where the scenario has an online labeler
    # 1.4: every standard error resamples prompts whole (clustered_se)
    version = "1.4"
    metrics = {"inter_labeler": True, "loo": True, "fleiss_kappa": True,
               "krippendorff_alpha": True, "rm_vs_labelers": True, "rm_vs_gold": True,
               "ai_judge_vs_majority": True, "rm_accuracy": True, "judge_accuracy": True,
               "ai_judge_accuracy": True}
    bounds = {**{m: (0.0, 1.0) for m in metrics}, "fleiss_kappa": (-1.0, 1.0),
              "krippendorff_alpha": (-1.0, 1.0)}
    figures = PLOTS

    def evaluate(self, policy: Policy, ctx: EvalContext) -> EvalResult:
        o = self.Options.model_validate(ctx.options)
        metrics: dict[str, float] = {}
        unc: dict[str, float] = {}
        extra: dict[str, Any] = {}
        per: dict[str, PerPrompt] = {}
        n = 0
        pairs = [p for p in (ctx.data.items if ctx.data else [])
                 if isinstance(p, dict) and "chosen" in p]  # paired held-out rows
        panel = ctx.world.make_panel(ctx.ledger, derive_seed(ctx.seed, "agreement.panel")) \
            if ctx.world.has_labeler else None
        if panel is not None and (hasattr(panel, "label_matrix") or not pairs):
            n = self.panel_agreement(policy, ctx, o, panel, metrics, unc, extra, per)
        if pairs:
            n = max(n, len(pairs))
            held_out_accuracy(pairs, ctx, metrics, unc, extra, per)
        if not metrics:
            raise ValueError("labeler_agreement: this scenario has neither an online labeler "
                             "nor held-out preference pairs; drop labeler_agreement from evals")
        return EvalResult(metrics=metrics, uncertainty=unc, n=n, extra=extra, plots=list(PLOTS),
                          per_prompt=per)

    def panel_agreement(self, policy: Policy, ctx: EvalContext, o: AgreementOptions, panel,
                        metrics: dict[str, float], unc: dict[str, float],
                        extra: dict[str, Any], per: dict[str, PerPrompt]) -> int:
        """The panel's agreement with itself, and each judge's with it, on pairs of the
        policy's own samples (fills ``metrics``, ``unc`` and ``extra``; returns the pairs)."""
        prompts = ctx.prompts(self.name)
        reps = o.pairs_per_prompt
        flat = [p for p in prompts for _ in range(reps)]
        a = policy.generate(flat, max_new_tokens=24, temperature=1.0,
                            seed=derive_seed(ctx.seed, "agreement.a"))
        b = policy.generate(flat, max_new_tokens=24, temperature=1.0,
                            seed=derive_seed(ctx.seed, "agreement.b"))
        if not hasattr(panel, "label_matrix"):
            raise ValueError("labeler_agreement needs a panel with label_matrix (several "
                             "labelers on the same pairs)")
        labels = panel.label_matrix(flat, a, b)
        inter, n_pairs, matrix = pairwise_agreement(labels)
        excluded = int(np.isnan(binarize(labels)).sum())
        metrics.update({"inter_labeler": inter, "loo": leave_one_out(labels),
                        "fleiss_kappa": fleiss(labels), "krippendorff_alpha": kalpha(labels)})
        extra.update({"labeler_matrix": matrix.tolist(), "rater_pairs": n_pairs,
                      "excluded_labels": excluded, "items": len(flat),
                      "labelers": labels.shape[1]})
        maj = majority(labels)
        gold = ctx.world.gold_judge
        reward_fn = ctx.trained.reward_fn if ctx.trained else None
        if reward_fn is not None:
            rm = rm_order(reward_fn, flat, a, b)
            x = binarize(labels)
            ok = ~np.isnan(x) & ~np.isnan(rm)[:, None]
            # every labeler's label on a pair counts, each under its pair's prompt
            ids = np.array([prompt_id(p) for p in flat])[:, None].repeat(x.shape[1], axis=1)
            put("rm_vs_labelers", PerPrompt.of(ids[ok], (x == rm[:, None])[ok].astype(float)),
                ctx.seed, metrics, unc, per)
            if gold is not None:
                put("rm_vs_gold", rm_gold_hits(rm, gold, flat, a, b), ctx.seed, metrics, unc,
                    per)
                start = ctx.references.get("sft")
                if start is not None and getattr(start, "policy", start) is not policy:
                    held = ctx.trained.held_out_prompts if ctx.trained else None
                    m, u, pp = rm_on_start(reward_fn, gold, start, flat, ctx.seed, held)
                    metrics.update(m)
                    unc.update(u)
                    per.update(pp)
        make_judge = ctx.trained.make_ai_judge if ctx.trained else None
        if make_judge is not None:
            ai_judge_agreement(make_judge(ctx.ledger), maj, flat, a, b, ctx, metrics, unc, extra,
                               per)
        return len(flat)


def ai_judge_agreement(judge, maj: np.ndarray, flat: list[str], a: list[str], b: list[str],
                       ctx: EvalContext, metrics: dict[str, float], unc: dict[str, float],
                       extra: dict[str, Any], per: dict[str, PerPrompt]) -> None:
    """The method's AI judge against the panel's majority ``maj`` on the pairs ``(a, b)``,
    overall and by what the pair differs in (fills ``metrics``, ``unc`` and ``extra``)."""
    pj = np.asarray(judge.prefer(flat, a, b))
    jl = np.where(pj > 0.5, 1.0, np.where(pj < 0.5, 0.0, np.nan))
    ok = ~np.isnan(jl) & ~np.isnan(maj)
    put("ai_judge_vs_majority",
        PerPrompt.of((prompt_id(flat[i]) for i in np.flatnonzero(ok)),
                     (jl[ok] == maj[ok]).astype(float)), ctx.seed, metrics, unc, per)
    if ctx.world.attributes is not None:
        by: dict[str, list[float]] = defaultdict(list)
        where: dict[str, list[str]] = defaultdict(list)
        for i in np.flatnonzero(ok):
            kind = differs_in(ctx.world.attributes(flat[i], a[i]),
                              ctx.world.attributes(flat[i], b[i]))
            by[kind].append(float(jl[i] == maj[i]))
            where[kind].append(flat[i])
        for kind, v in by.items():
            metrics[f"ai_judge_vs_majority.{kind}"] = float(np.mean(v))
            unc[f"ai_judge_vs_majority.{kind}"] = clustered_se(v, where[kind], ctx.seed)
        extra["ai_judge_counts"] = {k: len(v) for k, v in by.items()}

