"""The people and judges both scenarios simulate, written once: a labeler panel over any
utility, a reward-model labeler, the panel-mean judge, and the AI judge that asks a causal LM
which of two answers is better. A scenario supplies only what differs: how it reads a response
(the micro-world's exact parser, the real scenario's offline scorers) and how it words a query.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from bench.api import Policy
from bench.budget import Ledger
from bench.seeding import derive_seed
from scenarios import world as W

Utility = Callable[[str, str, np.ndarray], float]
"""(prompt, response, one labeler's weights) -> that labeler's utility for the response."""


def plackett_luce(u: np.ndarray, tau: float, rng: np.random.Generator) -> list[int]:
    """A noisy ranking, best first: Plackett-Luce with Gumbel noise, whose pairwise marginals
    are Bradley-Terry at temperature ``tau``."""
    noisy = u / tau + rng.gumbel(size=len(u))
    return [int(i) for i in np.argsort(-noisy, kind="stable")]


class SimulatedPanel:
    """The simulated human panel, bound to a ledger. Each comparison goes to one labeler drawn
    at random (as crowd work is assigned); ``label_matrix`` asks several for agreement studies.
    Labelers' weights are drawn once per world (``world_seed``); their noise per panel
    (``seed``, the cell's)."""

    def __init__(self, utility: Utility, panel: W.PanelSpec, ledger: Ledger, seed: int,
                 world_seed: int):
        self.utility, self.panel, self.ledger = utility, panel, ledger
        self.weights = panel.weights(world_seed)
        self.rng = np.random.default_rng(derive_seed(seed, "panel.labels"))

    def _u(self, prompt: str, response: str, who: int) -> float:
        return self.utility(prompt, response, self.weights[who])

    def _one(self, prompt: str, a: str, b: str, who: int) -> float:
        p = self.panel
        return W.bt_label(self._u(prompt, a, who), self._u(prompt, b, who), p.tau, self.rng,
                          flip=p.flip, skip=p.skip, tie=p.tie)

    def prefer(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        self.ledger.charge("comparisons", len(prompts))
        who = self.rng.integers(self.panel.n_labelers, size=len(prompts))
        return [self._one(p, x, y, int(k)) for p, x, y, k in zip(prompts, a, b, who)]

    def rank(self, prompt: str, responses: list[str]) -> list[int]:
        k = len(responses)
        self.ledger.charge("comparisons", k * (k - 1) // 2)
        who = int(self.rng.integers(self.panel.n_labelers))
        u = np.array([self._u(prompt, r, who) for r in responses])
        return plackett_luce(u, self.panel.tau, self.rng)

    def rate(self, prompts: list[str], responses: list[str]) -> list[bool]:
        """Binary ratings (a :class:`bench.api.Rater`): one labeler drawn at random per response
        calls it acceptable when it wins a Bradley-Terry comparison, with the panel's flips,
        against a reference answer of utility 0 (in the micro-world: clean, of typical length,
        with a truth score of 0, between admitting ignorance at -0.5 and the truth at 1: a true
        clean answer is usually acceptable, a false one usually not). One ``ratings`` unit
        each."""
        self.ledger.charge("ratings", len(prompts))
        who = self.rng.integers(self.panel.n_labelers, size=len(prompts))
        p = self.panel
        return [W.bt_label(self._u(q, r, int(k)), 0.0, p.tau, self.rng, flip=p.flip) == 1.0
                for q, r, k in zip(prompts, responses, who)]

    def label_matrix(self, prompts: list[str], a: list[str], b: list[str],
                     labelers: list[int] | None = None) -> np.ndarray:
        """Labels [pairs, labelers] from several labelers on the same pairs (nan = skipped)."""
        who = list(range(self.panel.n_labelers)) if labelers is None else labelers
        self.ledger.charge("comparisons", len(prompts) * len(who))
        return np.array([[self._one(p, x, y, k) for k in who] for p, x, y in zip(prompts, a, b)])


class RewardModelLabeler:
    """Labels from a reward model (hub id or folder): Bradley-Terry on its scores. For users
    whose machine reaches the hub; charged like the simulated panel."""

    def __init__(self, spec: str, ledger: Ledger, seed: int, tau: float):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(spec)
        self.model = AutoModelForSequenceClassification.from_pretrained(spec).eval()
        self.ledger, self.tau = ledger, tau
        self.rng = np.random.default_rng(derive_seed(seed, "panel.labels"))

    @torch.no_grad()
    def _scores(self, prompts, responses) -> np.ndarray:
        enc = self.tok(prompts, responses, padding=True, truncation=True, return_tensors="pt")
        return self.model(**enc).logits[:, 0].float().numpy()

    def prefer(self, prompts, a, b) -> list[float]:
        self.ledger.charge("comparisons", len(prompts))
        sa, sb = self._scores(prompts, a), self._scores(prompts, b)
        return [W.bt_label(x, y, self.tau, self.rng) for x, y in zip(sa, sb)]

    def rank(self, prompt, responses) -> list[int]:
        k = len(responses)
        self.ledger.charge("comparisons", k * (k - 1) // 2)
        return plackett_luce(self._scores([prompt] * k, responses), self.tau, self.rng)

    def label_matrix(self, prompts, a, b, labelers=None) -> np.ndarray:
        return np.array(self.prefer(prompts, a, b))[:, None]


class UtilityJudge:
    """A judge that prefers the response of higher ``reward`` (ties within 1e-9 are 0.5): the
    base of the scenarios' noise-free population-mean utility, for win-rates and the 'gold'
    curves of RL runs. Evaluation only. Subclasses define ``reward``."""

    def reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        raise NotImplementedError

    def prefer(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        ua, ub = self.reward(prompts, a), self.reward(prompts, b)
        return [1.0 if x > y + 1e-9 else 0.0 if y > x + 1e-9 else 0.5 for x, y in zip(ua, ub)]


Query = Callable[[str, str, str, str], str]
"""(prompt, principle, first response, second response) -> the judge's query text."""


class AIJudge:
    """RLAIF's judge: a causal LM asked under each principle which of two responses is better,
    in both orders to cancel position bias (Zheng et al. 2023). P(first) comes from the
    log-probabilities of the two answer tokens ``letters``; P(a) averages the two orders and
    then the principles. ``chat`` wraps each query in the model's chat template. One pair
    costs one ``ai_comparisons`` unit however many queries it takes."""

    def __init__(self, model: Policy, principles: list[str], ledger: Ledger, *, query: Query,
                 letters: tuple[str, str], chat: bool):
        self.model, self.principles, self.ledger = model, principles, ledger
        self.query, self.letters, self.chat = query, letters, chat

    def prefer(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        self.ledger.charge("ai_comparisons", len(prompts))
        msgs = [self.query(p, pr, first.strip(), second.strip())
                for p, x, y in zip(prompts, a, b) for pr in self.principles
                for first, second in ((x, y), (y, x))]
        if self.chat:
            msgs = self.model.format_chat(msgs)
        ctx = [m for m in msgs for _ in (0, 1)]
        conts = list(self.letters) * len(msgs)
        lp = np.array(self.model.logprob(ctx, conts)).reshape(len(prompts),
                                                              len(self.principles), 2, 2)
        p_first = 1.0 / (1.0 + np.exp(lp[..., 1] - lp[..., 0]))  # P(first letter) per order
        p_a = 0.5 * (p_first[..., 0] + (1.0 - p_first[..., 1]))  # a is second when swapped
        return [float(v) for v in p_a.mean(axis=1)]
