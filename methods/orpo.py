"""ORPO (Hong et al. 2024): one stage from the base model, no SFT stage and no reference model.
Its loss is a likelihood term on the chosen side plus an odds-ratio term that pushes the chosen
response's odds above the rejected one's; through TRL's experimental ORPOTrainer, whose
likelihood term covers the prompt's tokens as well as the response's (TRL 1.16 computes it
"over the full prompt and response"), where alignbench's SFT trains on the answer only.

At the budget SFT-then-DPO gets, ORPO gets the same labels from the start it has: the base
model. Its pairs are (a) every demonstration of ``budget.demonstrations`` as the chosen
response against one base-model sample for its prompt (the demonstrations SFT would have
trained on, charged as SFT's are, and one rollout each), and (b) ``budget.comparisons``
rankings of K base-model samples per prompt by the panel, as the shared set ranks the SFT
model's. So "orpo from base" against "sft then dpo" is a comparison at equal labels.
"""

from __future__ import annotations

from pydantic import Field

from bench.api import Start, TrainContext, Trained
from bench.budget import capped
from bench.seeding import derive_seed
from methods.feedback import SharedSetConfig, drawn_comparisons, ranked_pairs, sample_k
from methods.trl_train import Schedule, train_reference_free


class ORPOConfig(SharedSetConfig, Schedule):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "lr": 2e-4, "epochs": 1.0,
                         "batch_size": 8}}
    beta: float = Field(0.1, gt=0, description="weight of the odds-ratio term (Hong et al.'s "
                        "lambda: 0.1)")
    lr: float = Field(3e-4, gt=0, description="learning rate (SFT's: ORPO also learns the task "
                      "from the base model)")
    epochs: float = Field(3.0, gt=0, description="passes over the pairs (SFT's)")
    batch_size: int = Field(32, ge=1, description="pairs per step")
    demonstration_pairs: bool = Field(True, description="each demonstration as chosen against "
                                      "a base-model sample (off: comparisons only)")

    def spends(self):
        return super().spends() | ({"demonstrations"} if self.demonstration_pairs else set())

    def planned_spend(self, budget):
        plan = super().planned_spend(budget)  # the ranked comparisons' rollouts
        if not self.demonstration_pairs:
            return plan
        demos = capped(budget, "demonstrations")
        label, _ = plan["rollouts"]
        return {"demonstrations": (demos, "each the chosen side of one pair"),
                "rollouts": (label + demos, f"{label} sampled to rank the comparisons at "
                             f"k={self.k}, {demos} as the demonstrations' rejected sides")}


def demonstration_pairs(demos: list[dict[str, str]], rejected: list[str]) -> list[dict[str, str]]:
    """Each demonstration as the chosen response against a sample for the same prompt."""
    return [{"prompt": d["prompt"], "chosen": d["completion"], "rejected": r}
            for d, r in zip(demos, rejected, strict=True)]


class ORPO:
    name = "orpo"
    description = "ORPO from the base model: SFT loss plus odds-ratio preference term (TRL)"
    Config = ORPOConfig
    starts_from = "base"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: ORPOConfig) -> Trained:
        from trl.experimental.orpo import ORPOConfig as TRLORPOConfig
        from trl.experimental.orpo import ORPOTrainer

        base, policy = start.reference, start.trainable()
        n = int(ctx.ledger.remaining("comparisons"))
        if ctx.scenario.preferences is not None:  # the user's pairs, as every method draws them
            pairs = drawn_comparisons(ctx, n, None)
        else:  # the base model's samples, ranked: ORPO starts from base, not from SFT
            panel = ctx.scenario.make_panel(ctx.ledger, ctx.seed)
            pairs = ranked_pairs(base, ctx.scenario.train_prompts, panel, n, config.k,
                                 ctx.ledger, seed=ctx.seed, temperature=config.label_temperature,
                                 max_new_tokens=config.max_new_tokens)
        if config.demonstration_pairs:
            n = int(ctx.ledger.remaining("demonstrations"))
            ctx.ledger.charge("demonstrations", n)
            demos = ctx.scenario.demonstrations(n, ctx.seed)
            seed = derive_seed(ctx.seed, "orpo.rejected")
            rejected = sample_k(base, [d["prompt"] for d in demos], 1, ctx.ledger, seed=seed,
                                temperature=config.label_temperature,
                                max_new_tokens=config.max_new_tokens)
            pairs += demonstration_pairs(demos, [r[0] for r in rejected])
        train_reference_free(ORPOTrainer, TRLORPOConfig, policy, pairs, ctx, config, "orpo",
                             beta=config.beta)
        return Trained(policy=policy)
