"""RAFT, reward-ranked fine-tuning (Dong et al. 2023): sample N answers per prompt from the SFT
model, keep the one the labeler panel ranks first, and fine-tune on the kept answers.

An example plugin: one file, written from bench/api/ and alignbench's README. Its labels and
samples go through the ledger (``sample_k`` charges rollouts, ``panel.rank`` charges
comparisons) and its training steps are charged before they run (``metered``), so it competes
under the same budget as every built-in method.
"""

from __future__ import annotations

from datasets import Dataset
from pydantic import Field

from bench.api import MethodConfig, Start, TrainContext, Trained
from bench.models import n_params
from bench.seeding import derive_seed
from methods.common import FiniteGuard, metered, trainer_args
from methods.feedback import pick_prompts, sample_k


class RAFTConfig(MethodConfig):
    n: int = Field(4, ge=2, description="answers sampled per prompt; the panel keeps its best")
    prompts: int = Field(64, ge=1, description="training prompts sampled")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    max_new_tokens: int = Field(24, ge=1, description="answer length limit")
    epochs: float = Field(2.0, gt=0, description="passes over the kept answers")
    lr: float = Field(1e-4, gt=0, description="learning rate (tiny models)")
    batch_size: int = Field(16, ge=1, description="answers per step")

    def planned_spend(self, budget):
        rollouts, labels = self.prompts * self.n, self.prompts * self.n * (self.n - 1) // 2
        return {"rollouts": (rollouts, f"{self.prompts} prompts x n={self.n}"),
                "comparisons": (labels, f"ranking {self.n} answers costs "
                                        f"{self.n * (self.n - 1) // 2} comparisons per prompt")}


class RAFT:
    name = "raft"
    description = "example plugin: fine-tune on the panel's favourite of N SFT samples (RAFT)"
    Config = RAFTConfig
    starts_from = "sft"  # start from the shared SFT stage: start.reference and start.trainable()
    shared_stage = False  # nothing else starts from raft

    def train(self, start: Start, ctx: TrainContext, config: RAFTConfig) -> Trained:
        from trl import SFTConfig, SFTTrainer

        panel = ctx.scenario.make_panel(ctx.ledger, ctx.seed)
        prompts = pick_prompts(ctx.scenario.train_prompts, config.prompts,
                               derive_seed(ctx.seed, "raft.prompts"))
        samples = sample_k(start.reference, prompts, config.n, ctx.ledger,  # charges rollouts
                           seed=derive_seed(ctx.seed, "raft.samples"),
                           temperature=config.temperature, max_new_tokens=config.max_new_tokens)
        kept = [{"prompt": p, "completion": s[panel.rank(p, s)[0]]}  # charges comparisons
                for p, s in zip(prompts, samples)]
        policy = start.trainable()
        args = trainer_args(SFTConfig, ctx, "raft", num_train_epochs=config.epochs,
                            learning_rate=config.lr, per_device_train_batch_size=config.batch_size,
                            completion_only_loss=True)
        trainer = SFTTrainer(model=policy.model, args=args, train_dataset=Dataset.from_list(kept),
                             processing_class=policy.tokenizer,
                             callbacks=[FiniteGuard(policy.model)])
        metered(trainer, ctx.ledger, n_params(policy.model)).train()  # each step charged first
        policy.model.eval()
        return Trained(policy=policy)
