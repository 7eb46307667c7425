"""Every random stream in alignbench is named: ``derive_seed(seed, purpose, index)``.

A cell's seed (or a world's) is the root; each purpose (the PPO batch of step ``index``, the
win-rate's own samples...) gets its own stream, the BLAKE2b hash of root, purpose and index
taken mod 2**32 (numpy's and torch's seed range). Adding a purpose never shifts another's
numbers, and two streams, whatever their purposes, indices or roots, coincide only by chance
(2**-32 a pair): nothing draws alike because its rule happens to equal another's.

Hand a function the root when it derives its own named streams from it (a panel, a scenario's
demonstrations, a labelling round); hand it ``derive_seed(root, purpose)`` when it seeds a
generator with what it gets, so that no two draws of one cell share a stream.
"""

from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import Iterator


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """The seed of stream ``purpose`` (and its ``index``-th member) under root ``seed``."""
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
