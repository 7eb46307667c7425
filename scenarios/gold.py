"""The gold reward model: trained once when the world is built, on a split of the user's
preference data that no method sees, and used only to evaluate (win-rates, the gold curves of
RL runs, each reward model's agreement with it). This is the synthetic-gold setup of Gao et al.
2022 ("Scaling laws for reward model overoptimization") and Coste et al. 2023 ("Reward model
ensembles help mitigate overoptimization"): on real text with no human at hand, a reward model
trained on data the methods never see plays the human, so that a proxy's failure to generalize
shows as a gap against it.

Its accuracy on the held-out pairs is measured at build and recorded with the world: a gold
judge near chance makes every win-rate it gives near meaningless, and the report says what
it is.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import store
from bench.data.sources import quiet_datasets
from bench.seeding import derive_seed
from scenarios.judges import LoadSettings, RewardModelScorer

log = logging.getLogger("alignbench")


@dataclass(frozen=True)
class GoldSettings:
    epochs: float
    lr: float
    batch_size: int
    seed: int


def _train(base: Path, pairs: list[dict[str, Any]], load: LoadSettings, s: GoldSettings,
           progress: bool, out: Path) -> None:
    """TRL's RewardTrainer on ``pairs`` from the base model's backbone with a fresh scalar
    head (Ouyang et al. 2022), saved as safetensors with its tokenizer."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback
    from trl import RewardConfig, RewardTrainer

    from bench.logs import library_warnings_to_log, to_trainer_log
    from bench.models import torch_dtype

    tok = AutoTokenizer.from_pretrained(base, trust_remote_code=load.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with to_trainer_log("transformers"):  # the new head is missing from the base by design
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=1, dtype=torch_dtype(load.dtype, load.device),
            trust_remote_code=load.trust_remote_code,
            use_safetensors=None if load.allow_pickle else True)
    model.config.pad_token_id = tok.pad_token_id
    scratch = tempfile.mkdtemp(prefix="alignbench-gold-")  # the trainer's, not the model's
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")}
                              for p in pairs])
    log.info("training the gold reward model on %d preference pairs no method sees",
             len(pairs))
    # the libraries' deprecation notes and dataset bars are not the run's output
    with library_warnings_to_log(), quiet_datasets():
        # TRL checkpoints activations by default: a recomputed forward pass a reward model of
        # this size does not need
        names = {f.name for f in dataclasses.fields(RewardConfig)}
        ckpt = "activation_checkpointing" if "activation_checkpointing" in names else \
            "gradient_checkpointing"  # transformers 5's name, else the older one
        args = RewardConfig(
            **{ckpt: False},
            output_dir=scratch, save_strategy="no", report_to=[], logging_strategy="no",
            seed=derive_seed(s.seed, "gold.init"), data_seed=derive_seed(s.seed, "gold.data"),
            use_cpu=load.device != "cuda",
            disable_tqdm=not progress, num_train_epochs=s.epochs, learning_rate=s.lr,
            per_device_train_batch_size=s.batch_size, lr_scheduler_type="cosine",
            dataloader_num_workers=0, bf16=model.dtype == torch.bfloat16)
        trainer = RewardTrainer(model=model, args=args, train_dataset=data,
                                processing_class=tok)
        trainer.remove_callback(PrinterCallback)  # its summary line is not the run's output
        try:
            trainer.train()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    trainer.model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def accuracy(scorer: RewardModelScorer, pairs: list[dict[str, Any]]) -> tuple[float, int]:
    """Share of pairs scored chosen above rejected (RewardBench's measure; ties count half)."""
    if not pairs:
        return float("nan"), 0
    prompts = [p["prompt"] for p in pairs]
    rc = np.asarray(scorer.reward(prompts, [p["chosen"] for p in pairs]))
    rr = np.asarray(scorer.reward(prompts, [p["rejected"] for p in pairs]))
    return float(np.mean((rc > rr) + 0.5 * (rc == rr))), len(pairs)


def gold_reward_model(base: Path, base_id: str, pairs: list[dict[str, Any]],
                      held_out: list[dict[str, Any]], load: LoadSettings, s: GoldSettings,
                      progress: bool = True) -> tuple[RewardModelScorer, dict[str, Any]]:
    """The gold reward model, trained once per content (base model, pairs, settings, the
    libraries' versions) and cached; with what the world records of it."""
    # the trainer's seeds as derived, so that a gold model trained under other ones is not reused
    seeds = [derive_seed(s.seed, "gold.init"), derive_seed(s.seed, "gold.data")]
    key = store.content_key({"base": base_id, "pairs": store.content_key(pairs),
                             "settings": s.__dict__, "trainer_seeds": seeds, "dtype": load.dtype,
                             "packages": store.package_versions()})
    folder = store.build_once(store.cache_root() / "gold_rm" / key,
                              lambda tmp: _train(base, pairs, load, s, progress, tmp))
    scorer = RewardModelScorer(str(folder), load)
    acc, n = accuracy(scorer, held_out)
    return scorer, {"trained_on": len(pairs), "settings": s.__dict__, "key": key,
                    "held_out_accuracy": acc, "held_out_pairs": n}
