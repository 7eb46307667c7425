"""SimPO (Meng et al. 2024): a reference-free preference loss on the length-normalized
log-likelihood with a target margin, through TRL's experimental CPOTrainer
(``loss_type="simpo"``, ``cpo_alpha=0``: no behaviour-cloning term, which is SimPO rather than
CPO-SimPO). It trains on the shared comparison set DPO sees, so simpo against dpo at one budget
compares the losses on the same labels; with no reference model it costs one model's memory and
FLOPs where DPO costs two.
"""

from __future__ import annotations

from pydantic import Field

from bench.api import Start, TrainContext, Trained
from methods.feedback import SharedSetConfig, shared_comparisons
from methods.trl_train import Schedule, train_reference_free


class SimPOConfig(SharedSetConfig, Schedule):
    # pretrained models of 0.1-1B parameters (the real scenario): LoRA and its learning rates,
    # longer answers, batches a 2-core machine or one GPU holds
    profiles = {"real": {"lora": True, "k": 4, "max_new_tokens": 48, "lr": 5e-5, "epochs": 1.0,
                         "batch_size": 8}}
    beta: float = Field(2.0, gt=0, description="reward scale (Meng et al.: 2.0-2.5)")
    gamma: float = Field(0.5, ge=0, description="target reward margin (TRL's simpo_gamma)")
    lr: float = Field(5e-5, gt=0, description="learning rate (DPO's, for a fair comparison)")
    epochs: float = Field(2.0, gt=0, description="passes over the comparisons (DPO's)")
    batch_size: int = Field(32, ge=1, description="comparisons per step (DPO's)")


class SimPO:
    name = "simpo"
    description = "SimPO: reference-free, length-normalized preference loss (TRL CPOTrainer)"
    Config = SimPOConfig
    starts_from = "sft"
    shared_stage = False

    def train(self, start: Start, ctx: TrainContext, config: SimPOConfig) -> Trained:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        policy = start.trainable()
        pairs = shared_comparisons(ctx, start, int(ctx.ledger.remaining("comparisons")), config)
        train_reference_free(CPOTrainer, CPOConfig, policy, pairs, ctx, config, "simpo",
                             loss_type="simpo", cpo_alpha=0.0, beta=config.beta,
                             simpo_gamma=config.gamma)
        return Trained(policy=policy)
