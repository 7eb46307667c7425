"""distinct-n (Li et al. 2016): the share of n-grams in a policy's samples that are distinct, a
common check that alignment has not collapsed a model onto a few stock answers.

An example plugin eval: one file, written from bench/api/ and alignbench's README. It reads
its prompts from the scenario's data for another eval (``prompts_from``), declares its metrics
and their direction, an uncertainty per metric, and the figure the report should draw.
"""

from __future__ import annotations

from pydantic import Field

from bench.api import DataError, EvalContext, EvalOptions, EvalResult, Plot, Policy
from bench.seeding import derive_seed
from bench.stats import cluster_bootstrap_se


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of ``texts`` (whitespace tokens, pooled over texts);
    0.0 when no text is n tokens long."""
    grams = [tuple(words[i:i + n]) for t in texts for words in [t.split()]
             for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class DistinctOptions(EvalOptions):
    prompts_from: str = Field("win_rate", description="the eval whose scenario prompts to use")
    samples: int = Field(4, ge=1, description="answers sampled per prompt")
    max_new_tokens: int = Field(24, ge=1, description="answer length limit")


class Distinct:
    name = "distinct"
    description = "example plugin: distinct-1 and distinct-2 of sampled answers (diversity)"
    version = "1.0"
    metrics = {"distinct_1": True, "distinct_2": True}
    bounds = {m: (0.0, 1.0) for m in metrics}  # fractions: the report keeps intervals in range
    Options = DistinctOptions

    def evaluate(self, policy: Policy, ctx: EvalContext) -> EvalResult:
        o = DistinctOptions.model_validate(ctx.options)
        data = ctx.world.eval_data.get(o.prompts_from) if ctx.world else None
        if data is None or not data.prompts:
            raise DataError(f"distinct: the scenario has no prompts for {o.prompts_from!r}; set "
                            f"[eval.distinct] prompts_from to an eval it supplies")
        flat = [p for p in data.prompts for _ in range(o.samples)]
        outs = policy.generate(flat, max_new_tokens=o.max_new_tokens, temperature=1.0,
                               seed=derive_seed(ctx.seed, "distinct.samples"))
        metrics, unc = {}, {}
        for n in (1, 2):
            metrics[f"distinct_{n}"] = distinct_n(outs, n)
            unc[f"distinct_{n}"] = cluster_bootstrap_se(  # prompts resampled whole
                lambda i, n=n: distinct_n([outs[j] for j in i], n), len(data.prompts),
                o.samples, n_boot=100, seed=ctx.seed)
        return EvalResult(metrics=metrics, uncertainty=unc, n=len(data.prompts),
                          extra={"samples_per_prompt": o.samples},
                          plots=[Plot("Diversity of sampled answers (distinct-n)", "bars",
                                      ("distinct.distinct_1", "distinct.distinct_2"))])
