"""Kahneman-Tversky Optimization (Ethayarajh et al. 2024) with TRL's KTOTrainer: unpaired
"desirable"/"undesirable" labels instead of pairs, a prospect-theory loss against the SFT model.

Its labels come from the very comparisons DPO and PPO's reward model see (the shared set: the
SFT model's K samples per prompt ranked by the panel), made unpaired the way the KTO paper
turns paired data into binary data: a response ranked in the top half of its prompt's K is
desirable, one in the bottom half undesirable, and the median (odd K) is dropped. So kto against
dpo at one budget compares the losses on the same labels.

With ``source = "ratings"`` the labels are instead the panel's direct binary ratings (is this
answer acceptable?) of the SFT model's K samples per prompt: one ``ratings`` unit each, the
budget's ``ratings``. A rating is cheaper for a person than a comparison; how many ratings one
comparison's price buys is the matrix's choice of ``budget.ratings`` against
``budget.comparisons``, recorded in every result's budget.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bench.api import DataError, Rater, Start, TrainContext, Trained
from bench.budget import Ledger, capped
from bench.seeding import derive_seed
from methods.feedback import SharedSetConfig, pick_prompts, sample_k, shared_comparisons
from methods.trl_train import Schedule, schedule, train_with_trl


class KTOConfig(SharedSetConfig, Schedule):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "lr": 5e-5, "epochs": 1.0,
                         "batch_size": 8}}
    beta: float = Field(0.1, description="KL strength (Ethayarajh et al.: 0.1)")
    desirable_weight: float = Field(1.0, gt=0, description="loss weight of desirable examples")
    undesirable_weight: float = Field(1.0, gt=0, description="loss weight of undesirable ones")
    lr: float = Field(5e-5, gt=0, description="learning rate (DPO's, for a fair comparison)")
    epochs: float = Field(2.0, gt=0, description="passes over the examples (DPO's)")
    batch_size: int = Field(32, ge=2, description="examples per step (KTO's KL term needs 2+)")
    source: Literal["comparisons", "ratings"] = Field(
        "comparisons", description="labels from the shared ranked comparisons, or the panel's "
        "direct binary ratings (budget.ratings)")
    balance: bool = Field(True, description="scale desirable_weight by n_undesirable / "
                          "n_desirable so both classes weigh the same (Ethayarajh et al.)")

    def check_world(self, world):
        unpaired_data = world.preferences is not None and not world.preferences.paired
        rates = world.has_labeler and isinstance(world.make_panel(Ledger(), 0), Rater)
        if self.source == "ratings" and not unpaired_data and not rates:
            raise ValueError("kto source = \"ratings\" needs unpaired preference data "
                             "(prompt/completion/label) or an online labeler that rates (the "
                             "panel); set method.kto.source = \"comparisons\"")

    def spends(self):
        return super().spends() if self.source == "comparisons" else \
            frozenset({"ratings", "rollouts"})

    def planned_spend(self, budget):
        if self.source == "comparisons":
            return super().planned_spend(budget)
        n = capped(budget, "ratings")
        rated = n // self.k * self.k
        if not rated:
            raise ValueError(f"budget.ratings {n} rates no prompt's k={self.k} samples; raise "
                             f"budget.ratings to at least {self.k}")
        return {"ratings": (rated, f"{rated} of the SFT model's samples rated, k={self.k} a "
                            f"prompt"),
                "rollouts": (rated, f"{rated} sampled to be rated")}


def class_weights(n_d: int, n_u: int, desirable: float, undesirable: float,
                  balance: bool) -> tuple[float, float]:
    """KTO's loss weights. Ethayarajh et al. ask for lambda_D n_D / (lambda_U n_U) in [1, 4/3];
    ``balance`` scales the desirable weight by n_U / n_D, so the ratio is the configured
    weights' (1 by default) whatever the class sizes (labels from the comparisons are balanced
    by construction; ratings are as balanced as the SFT model is good). A class with no
    examples leaves the weights as given. ``n_d``, ``n_u``: the desirable and undesirable
    examples."""
    if not balance or not n_d or not n_u:
        return desirable, undesirable
    return desirable * n_u / n_d, undesirable


def rated(ctx: TrainContext, start: Start, n: int, cfg: KTOConfig) -> list[dict[str, str | bool]]:
    """KTO examples from the panel's binary ratings of K SFT samples for each of n // K
    prompts: desirable when the labeler called the answer acceptable. With the scenario's
    unpaired preference data, ``n`` of its rows instead, drawn without replacement."""
    data = ctx.scenario.preferences
    if data is not None and not data.paired:  # the user's unpaired rows, each one rating
        def compute(ledger):
            rows = data.draw(n, ctx.seed)
            ledger.charge("ratings", len(rows))
            return rows
        return ctx.stages.once("ratings", {"data": data.key, "n": n, "seed": ctx.seed},
                               ctx.ledger, compute)
    panel = ctx.scenario.make_panel(ctx.ledger, ctx.seed)
    if not isinstance(panel, Rater):
        raise DataError("kto: this scenario's panel gives no binary ratings; set "
                        "method.kto.source = \"comparisons\"")
    prompts = pick_prompts(ctx.scenario.train_prompts, n // cfg.k,
                           derive_seed(ctx.seed, "ratings.prompts"))
    samples = sample_k(start.reference, prompts, cfg.k, ctx.ledger,
                       seed=derive_seed(ctx.seed, "ratings.samples"),
                       temperature=cfg.label_temperature, max_new_tokens=cfg.max_new_tokens)
    flat_p = [p for p in prompts for _ in range(cfg.k)]
    flat_r = [r for rs in samples for r in rs]
    return [{"prompt": p, "completion": r, "label": ok}
            for p, r, ok in zip(flat_p, flat_r, panel.rate(flat_p, flat_r))]


def unpaired(pairs: list[dict[str, str]]) -> list[dict[str, str | bool]]:
    """Ranked pairs (all K(K-1)/2 of each prompt's K responses) as KTO examples: each response
    once, desirable when it won more of its pairs than it lost, undesirable when it lost more;
    a response that won as many as it lost (the median of an odd K) is dropped."""
    wins: dict[tuple[str, str], int] = {}
    for p in pairs:
        wins[(p["prompt"], p["chosen"])] = wins.get((p["prompt"], p["chosen"]), 0) + 1
        wins[(p["prompt"], p["rejected"])] = wins.get((p["prompt"], p["rejected"]), 0) - 1
    return [{"prompt": prompt, "completion": response, "label": net > 0}
            for (prompt, response), net in wins.items() if net != 0]


def kl_tokens(batch: dict[str, Any]) -> int:
    """The tokens of a KTO batch's mismatched pairs, which the policy and the reference each
    read in a forward pass for the KL estimate (TRL's ``KL_attention_mask``; none where the
    trainer estimates no KL)."""
    mask = batch.get("KL_attention_mask")
    return 0 if mask is None else int(mask.sum())


class KTO:
    name = "kto"
    description = "KTO: unpaired desirable/undesirable labels from the shared comparisons (TRL)"
    Config = KTOConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: KTOConfig) -> Trained:
        from trl import KTOConfig as TRLKTOConfig
        from trl import KTOTrainer

        sft, policy = start.reference, start.trainable()
        if config.source == "ratings":
            examples = rated(ctx, start, int(ctx.ledger.remaining("ratings")), config)
        else:
            pairs = shared_comparisons(ctx, start, int(ctx.ledger.remaining("comparisons")),
                                       config)
            examples = unpaired(pairs)
        n_d = sum(bool(e["label"]) for e in examples)
        n_u = len(examples) - n_d
        w_d, w_u = class_weights(n_d, n_u, config.desirable_weight, config.undesirable_weight,
                                 config.balance)
        ctx.log.info("kto: %d desirable, %d undesirable examples; weights %.3g / %.3g",
                     n_d, n_u, w_d, w_u)
        policy.model = train_with_trl(
            TRLKTOConfig, KTOTrainer, policy.model, examples, ctx, "kto", config,
            tokenizer=policy.tokenizer, reference=sft.model,
            trainer_kw={"ref_model": None if config.lora else sft.model},
            forward_only=kl_tokens,
            beta=config.beta, learning_rate=config.lr, num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            desirable_weight=w_d, undesirable_weight=w_u,
            **schedule(config, len(examples), config.batch_size, config.epochs))
        return Trained(policy=policy)
