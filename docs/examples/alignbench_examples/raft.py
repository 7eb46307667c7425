"""RAFT, reward-ranked fine-tuning (Dong et al. 2023): sample N answers per prompt from the SFT
model, keep the one the labeler panel ranks first, and fine-tune on the kept answers.

An example plugin: one file, written from bench/api/, alignbench's README and docs/plugins.md.
Its labels and samples go through the ledger (``sample_k`` charges rollouts, ``panel.rank``
charges comparisons) and its training steps are charged before they run (``train_with_trl``),
so it competes under the same budget as every built-in method.
"""

from __future__ import annotations

from pydantic import Field

from bench.api import Start, TrainContext, Trained
from bench.seeding import derive_seed
from methods.feedback import pick_prompts, sample_k
from methods.lora import LoRAOptions
from methods.trl_train import Schedule, schedule, train_with_trl


class RAFTConfig(LoRAOptions, Schedule):  # LoRA and the schedule come as fields of their own
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
        # one TRL stage: each step charged before it runs, stopped at a non-finite loss
        policy.model = train_with_trl(
            SFTConfig, SFTTrainer, policy.model, kept, ctx, "raft", config,
            tokenizer=policy.tokenizer, num_train_epochs=config.epochs, learning_rate=config.lr,
            per_device_train_batch_size=config.batch_size, completion_only_loss=True,
            **schedule(config, len(kept), config.batch_size, config.epochs))
        return Trained(policy=policy)
