"""The anchor for the PPO throughput target: TRL 1.9.2's experimental PPOTrainer (the last PPO that
TRL shipped) on the benchmark's exact shape and models, in episodes per second.

Not part of the suite (TRL 1.9.2 conflicts with the TRL the project uses). Install it into a
side environment that sees everything else (`python3 -m venv --system-site-packages
/tmp/trlvenv && /tmp/trlvenv/bin/pip install --no-deps trl==1.9.2`) and run

    /tmp/trlvenv/bin/python benchmarks/anchors/ppo_trl192.py [--steps 10] [--alignbench]

It builds the policy, reference, value and reward models with ``benchmarks/test_bench_ppo.py``'s
``_setup`` (same seed, so the same weights), gives TRL the same 8-token prompts, batch 32,
responses of 16, 4 PPO epochs and 1 minibatch, and times the steps after the first (warm-up) with a
callback (TRL's own logged ``eps`` agrees: 18 and 15 episodes/s against this clock's 18.0 and 15.2
in two runs). ``--alignbench`` then times alignbench's loop (the benchmark's own
function) on freshly built copies of the same models in the same process. This machine's speed
drifts by about 10% between runs, so compare figures from one invocation."""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def trl_episodes_per_second(steps: int) -> float:
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from benchmarks.test_bench_ppo import BATCH, RESPONSE_LEN, _setup

    assert trl.__version__ == "1.9.2", f"this anchor is TRL 1.9.2's PPO, found {trl.__version__}"
    policy, ref, value, rm, prompts, cfg = _setup()
    ids = [policy.context_ids(p) for p in prompts]
    ds = Dataset.from_dict({"input_ids": ids})
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

    args = PPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=1, num_mini_batches=1,
                     num_ppo_epochs=cfg.epochs, response_length=RESPONSE_LEN,
                     temperature=cfg.temperature, total_episodes=BATCH * (steps + 1),
                     local_rollout_forward_batch_size=BATCH, num_sample_generations=0,
                     learning_rate=cfg.lr, missing_eos_penalty=cfg.missing_eos_penalty,
                     stop_token="eos", kl_coef=cfg.kl_coef, report_to=[], save_strategy="no",
                     logging_steps=1, use_cpu=True, seed=0, bf16=False, fp16=False)
    trainer = PPOTrainer(args=args, processing_class=policy.tokenizer, model=policy.model,
                         ref_model=ref, reward_model=rm.model, value_model=value,
                         train_dataset=ds, callbacks=[Clock()])
    trainer.train()
    assert len(ends) == steps + 1, ends
    return steps * BATCH / (ends[-1] - ends[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--alignbench", action="store_true")
    a = ap.parse_args()
    report = {"trl_1_9_2_episodes_per_second": round(trl_episodes_per_second(a.steps), 1)}
    if a.alignbench:
        from benchmarks.test_bench_ppo import _episodes_per_second
        report["alignbench_episodes_per_second"] = round(_episodes_per_second(a.steps)[0], 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
