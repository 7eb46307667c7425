"""Direct Preference Optimization (Rafailov et al. 2023) with TRL's DPOTrainer.

DPO trains on exactly the comparisons PPO's reward model sees: the same SFT samples ranked by the
same panel, the same count (docs/design.md). ``rounds > 1`` gives iterative/online DPO: each
round labels fresh samples from the current policy and continues training from it, with the SFT
model as the fixed reference (Xu et al. 2023, "Some things are more CRINGE than others").
"""

from __future__ import annotations

from pydantic import Field, model_validator

from bench.api import Start, TrainablePolicy, TrainContext, Trained
from bench.budget import capped
from methods.common import accumulated
from methods.feedback import check_labeler, feedback_rounds, label_rollouts
from methods.lora import LoRAOptions
from methods.trl_train import Schedule, pair_rows, schedule, train_with_trl


class DPOConfig(LoRAOptions, Schedule):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "lr": 5e-5, "epochs": 1.0,
                         "batch_size": 8, "micro_batch_size": 2}}
    rounds: int = Field(1, ge=1, description="online rounds; the label budget splits evenly")
    k: int = Field(5, ge=2, description="responses ranked per prompt (same as ppo)")
    label_temperature: float = Field(1.0, description="sampling temperature for labeling")
    max_new_tokens: int = Field(24, ge=1, description="response length limit when sampling")
    beta: float = Field(0.1, description="KL strength (Rafailov et al.: 0.1)")
    lr: float = Field(5e-5, gt=0, description="learning rate (tiny models; ~5e-7 for real LMs)")
    epochs: float = Field(2.0, gt=0, description="passes over the comparisons per round")
    batch_size: int = Field(32, ge=1, description="comparisons per step")
    micro_batch_size: int | None = Field(
        None, ge=1, description="comparisons per forward and backward pass, the gradients "
        "accumulated over batch_size (the same step, to float rounding, in less memory); "
        "None: the whole batch at once")
    loss_type: str = Field("sigmoid", description="TRL loss: sigmoid (DPO), ipo, hinge, "
                           "robust, ...")
    label_smoothing: float | None = Field(
        None, ge=0, lt=0.5, description="robust DPO's label flip rate (Chowdhury et al. "
        "2024), which loss_type = \"robust\" needs; TRL's label smoothing for the others")

    @model_validator(mode="after")
    def _micro_divides(self):
        accumulated(self.batch_size, self.micro_batch_size)
        return self

    def check_world(self, world):
        check_labeler(world, self.rounds, "dpo")

    def spends(self):
        return frozenset({"comparisons", "rollouts"})

    def planned_spend(self, budget):
        flip_rate(self)  # refused before anything runs, not after the labels are bought
        n = capped(budget, "comparisons")
        label = label_rollouts(n, self.k, self.rounds)
        return {"rollouts": (label, f"{label} sampled to rank {n} comparisons at k={self.k}")}


def flip_rate(cfg: DPOConfig) -> float:
    """The label smoothing DPO trains with; robust DPO's is the rate at which its comparisons'
    labels are flipped, which the matrix must state. No scenario here knows it: the micro-world
    draws its rankings from Plackett-Luce at the panel's temperature, with no flip noise (its
    ``flip`` option flips single comparisons and ratings, not the rankings DPO trains on), so
    a flip rate taken from the scenario would correct noise the labels do not have."""
    if cfg.label_smoothing is not None:
        return cfg.label_smoothing
    if cfg.loss_type == "robust":
        raise ValueError("loss_type \"robust\" needs label_smoothing, the flip rate of its "
                         "comparisons' labels (Chowdhury et al. recommend 0.1 when unknown); "
                         "set it in the method's table")
    return 0.0


def dpo_train(policy: TrainablePolicy, ref: TrainablePolicy, pairs: list[dict], ctx: TrainContext,
              cfg: DPOConfig, stage: str, *, starts_at_ref: bool = False) -> None:
    """One DPOTrainer run on ``pairs`` (prompt/chosen/rejected), in place on ``policy``.

    With LoRA and a policy that starts at the reference (the first round), the reference is the
    policy with its adapters disabled (TRL does this when ``ref_model`` is None); later rounds
    start elsewhere and keep the SFT model as reference."""
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    # per step, before it runs: policy forward+backward, plus the reference's forward
    policy.model = train_with_trl(
        TRLDPOConfig, DPOTrainer, policy.model, pair_rows(pairs), ctx, stage, cfg,
        tokenizer=policy.tokenizer, reference=ref.model,
        trainer_kw={"ref_model": None if cfg.lora and starts_at_ref else ref.model},
        beta=cfg.beta, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        **accumulated(cfg.batch_size, cfg.micro_batch_size),
        loss_type=[cfg.loss_type], label_smoothing=flip_rate(cfg),
        **schedule(cfg, len(pairs), cfg.batch_size, cfg.epochs))


class DPO:
    name = "dpo"
    description = "DPO on the same ranked comparisons as PPO's reward model (TRL DPOTrainer)"
    Config = DPOConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: DPOConfig) -> Trained:
        sft, policy = start.reference, start.trainable()
        for rnd, pairs in feedback_rounds(ctx, start, policy, config):
            dpo_train(policy, sft, pairs, ctx, config, stage=f"dpo_{rnd}", starts_at_ref=rnd == 0)
        return Trained(policy=policy)
