"""Every random stream in alignbench is named: ``derive_seed(seed, purpose, index)``.

A cell's seed (or a world's) is the root; each purpose (the PPO batch of step ``index``, the
win-rate's own samples...) gets its own stream, so adding a purpose never shifts another's
numbers. The purposes of alignbench 0.1 keep the affine offsets they were written with
(``seed * multiplier + offset + index``), so results stay identical to the ones published with
it; a purpose not in that table gets a hashed seed (BLAKE2b of seed, purpose and index), which
another hashed purpose collides with only by chance (2**-32). A few 0.1 rows share a rule and
so draw alike for one root seed; tests/test_seams.py pins exactly those.
"""

from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import Iterator

# purpose -> (multiplier, offset). Frozen: changing a row changes published numbers.
LEGACY: dict[str, tuple[int, int]] = {
    # methods: label collection rounds, PPO's batches and minibatch order
    "labels.round": (1000, 0),  # ppo's and dpo's rounds > 0 (index = round)
    "rlaif.labels.round": (1000, 17),
    "ppo.round": (1000, 0),  # a PPO round's stream (index = round); see ppo.batch
    "ppo.batch": (100003, 0),  # the prompts of PPO step ``index`` (seed = the round's stream)
    "ppo.minibatch": (7, 0),  # minibatch order of PPO step ``index``
    # the runner and the evals' own samples
    "eval": (1, 1),  # the global generators while evals run
    "win_rate.policy": (1, 101),
    "win_rate.reference": (1, 202),
    "agreement.a": (1, 303),
    "agreement.b": (1, 404),
    "agreement.panel": (1, 505),
    "kl.samples": (1, 606),
    # scenarios (seed = the world's seed)
    "world.facts": (1, 0),  # entities, facts, kinds and the train/eval split of facts
    "world.model": (1, 0),  # torch's global generator: the base model's init and pretraining
    "world.corpus": (1, 1),
    "world.pretrain": (1, 2),
    "world.split": (1, 3),
    "world.truthfulqa": (1, 5),
    "demonstrations": (1, 11),  # seed = the cell's seed,
    "world.panel_weights": (1, 7919),
    "panel.labels": (1, 104729),
    "real.split": (1, 0),  # the real scenario's train/eval question split (seed = split_seed)
}


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """The seed of stream ``purpose`` (and its ``index``-th member) under root ``seed``."""
    if purpose in LEGACY:
        mul, off = LEGACY[purpose]
        return seed * mul + off + index
    h = hashlib.blake2b(f"{seed}/{purpose}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") % 2**32


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def rng_neutral() -> Iterator[None]:
    """Run a shared stage without touching the cell's global random state (python, numpy,
    torch, CUDA). A stage is built inside whichever cell first needs it and found cached by
    the rest; TRL's trainers reseed every global generator when created, so a stage built
    in-cell used to leave the cell's generators elsewhere than a cached one did, and e.g. the
    reward model's fresh score head, drawn from torch's global generator, differed between a
    fresh process and a long one (a kl_coef = 0 PPO cell: gold drop 1.94 against 1.80)."""
    import numpy as np
    import torch
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
