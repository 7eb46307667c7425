"""Collecting preference data through the ledger, shared by ppo, dpo and rlaif so that the
methods compared at equal budget also collect their labels the same way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol

import numpy as np
from pydantic import Field

from bench.api import Judge, Labeler, Policy, Start, TrainContext, TrainView
from bench.budget import Ledger, capped
from bench.seeding import derive_seed
from methods.lora import LoRAOptions


class SharedSetConfig(LoRAOptions):
    """The settings of a method that trains offline on the shared comparison set (one round):
    the same K, sampling temperature and length as PPO's and DPO's, so it gets the same
    labels, and the rollouts that drawing them costs."""

    k: int = Field(5, ge=2, description="responses ranked per prompt (the shared set's K)")
    label_temperature: float = Field(1.0, description="sampling temperature for labeling")
    max_new_tokens: int = Field(24, ge=1, description="response length limit when sampling")

    def spends(self):
        return frozenset({"comparisons", "rollouts"})

    def planned_spend(self, budget):
        n = capped(budget, "comparisons")
        label = label_rollouts(n, self.k, 1)
        return {"rollouts": (label, f"{label} sampled to rank {n} comparisons at k={self.k}")}


class SamplingSettings(Protocol):
    """What :func:`shared_comparisons` reads of a method's config (a :class:`SharedSetConfig`
    has these fields); a ``holdout_prompts`` attribute, where a config has one (PPO's), is
    honoured too."""

    k: int  # responses sampled and ranked per prompt: K(K-1)/2 comparisons each
    label_temperature: float  # sampling temperature of those responses
    max_new_tokens: int  # their length limit, in tokens


def pick_prompts(pool: list[str], n: int, seed: int) -> list[str]:
    """``n`` prompts from the pool, without replacement while it lasts, seeded."""
    if n <= 0:
        return []
    rng = np.random.default_rng(seed)
    reps = -(-n // len(pool))
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(reps)])[:n]
    return [pool[i] for i in order]


def sample_k(policy: Policy, prompts: list[str], k: int, ledger: Ledger, *, seed: int,
             temperature: float, max_new_tokens: int) -> list[list[str]]:
    """K samples per prompt, charged to ``rollouts`` before sampling."""
    ledger.charge("rollouts", len(prompts) * k)
    flat = policy.generate([p for p in prompts for _ in range(k)], max_new_tokens=max_new_tokens,
                           temperature=temperature, seed=seed)
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def pairs_per_prompt(k: int) -> int:
    return k * (k - 1) // 2


def label_rollouts(n_comparisons: int, k: int, rounds: int) -> int:
    """Responses sampled to collect ``n_comparisons`` labels split evenly over ``rounds``, K per
    prompt (what ranked_pairs and judged_pairs charge to ``rollouts``)."""
    return rounds * (n_comparisons // rounds // pairs_per_prompt(k)) * k


def _samples_for_labels(policy: Policy, pool: list[str], n_comparisons: int, k: int,
                        ledger: Ledger, seed: int, temperature: float, max_new_tokens: int
                        ) -> tuple[list[str], list[list[str]]]:
    """As many prompts as ``n_comparisons`` labels cover at K(K-1)/2 each, with K samples.
    ``seed`` is the labelling's root: the prompts and the samples each get their own stream."""
    prompts = pick_prompts(pool, n_comparisons // pairs_per_prompt(k),
                           derive_seed(seed, "labels.prompts"))
    if not prompts:
        return [], []
    return prompts, sample_k(policy, prompts, k, ledger, seed=derive_seed(seed, "labels.samples"),
                             temperature=temperature, max_new_tokens=max_new_tokens)


def ranked_pairs(policy: Policy, pool: list[str], panel: Labeler, n_comparisons: int, k: int,
                 ledger: Ledger, *, seed: int, temperature: float, max_new_tokens: int
                 ) -> list[dict[str, str]]:
    """InstructGPT-style: K responses per prompt, ranked by one labeler, expanded to all
    K(K-1)/2 pairs (chosen ranked above rejected). Uses at most ``n_comparisons`` labels."""
    prompts, samples = _samples_for_labels(policy, pool, n_comparisons, k, ledger, seed,
                                           temperature, max_new_tokens)
    pairs = []
    for p, responses in zip(prompts, samples):
        order = panel.rank(p, responses)
        for i in range(k):
            for j in range(i + 1, k):
                pairs.append({"prompt": p, "chosen": responses[order[i]],
                              "rejected": responses[order[j]]})
    return pairs


def judged_pairs(policy: Policy, pool: list[str], judge: Judge, n_comparisons: int, k: int,
                 ledger: Ledger, *, seed: int, temperature: float, max_new_tokens: int
                 ) -> list[dict[str, str | float]]:
    """The same collection with a pairwise judge: every pair of the K samples is judged; the
    judge's P(a) decides chosen/rejected and is kept (exact ties are dropped)."""
    prompts, samples = _samples_for_labels(policy, pool, n_comparisons, k, ledger, seed,
                                           temperature, max_new_tokens)
    ps, a, b = [], [], []
    for p, responses in zip(prompts, samples):
        for i in range(k):
            for j in range(i + 1, k):
                ps.append(p)
                a.append(responses[i])
                b.append(responses[j])
    prob = judge.prefer(ps, a, b)
    return [{"prompt": p, "chosen": x if q > 0.5 else y, "rejected": y if q > 0.5 else x,
             "p_judge": q} for p, x, y, q in zip(ps, a, b, prob) if q != 0.5]


def check_labeler(world: TrainView, rounds: int, method: str) -> None:
    """Refuse, before anything trains, later rounds' labels in a scenario that has no online
    labeler (preference data alone: its pairs label the first round only)."""
    if rounds > 1 and not world.has_labeler:
        raise ValueError(f"{method} rounds = {rounds} labels its own samples after the first "
                         f"round, and this scenario has no online labeler; set "
                         f"scenario.options.labeler (e.g. 'rm:<reward model>') or rounds = 1")


def feedback_prompts(prompts: list[str], holdout: str | None) -> list[str]:
    """The training prompts feedback is collected on: all of them, or those the regular
    expression ``holdout`` does not match, a prompt family the reward model and the policy's RL
    never see (the claims preset's claim 4c; labeler_agreement reports the reward model on it apart)."""
    if not holdout:
        return prompts
    kept = [p for p in prompts if not re.search(holdout, p)]
    if not kept or len(kept) == len(prompts):
        raise ValueError(f"holdout_prompts {holdout!r} matches "
                         f"{'every' if not kept else 'no'} training prompt; name a family "
                         "some prompts belong to and others do not (e.g. 'the sound of')")
    return kept


def drawn_comparisons(ctx: TrainContext, n: int, holdout: str | None) -> list[dict[str, str]]:
    """``n`` pairs drawn without replacement from the scenario's preference data (the cell's
    seed orders them), each charged as one comparison: the same pairs for every method at the
    same budget and seed. A held-out prompt family is left out of the draw."""
    data = ctx.scenario.preferences

    def compute(ledger: Ledger) -> list[dict[str, str]]:
        if not holdout:
            pairs = data.draw(n, ctx.seed)
        else:  # the family's pairs are drawn past, so the rest keep their order
            pool = [p for p in data.draw(data.size, ctx.seed)
                    if not re.search(holdout, p["prompt"])]
            pairs = pool[:n]
            if len(pairs) < n:
                raise ValueError(f"holdout_prompts {holdout!r} leaves {len(pool)} pairs of "
                                 f"the preference data, fewer than the {n} comparisons asked")
        ledger.charge("comparisons", len(pairs))
        return pairs
    return ctx.stages.once("comparisons", {"data": data.key, "n": n, "seed": ctx.seed,
                                           "holdout": holdout}, ctx.ledger, compute)


def shared_comparisons(ctx: TrainContext, start: Start, n: int, cfg: SamplingSettings
                       ) -> list[dict[str, str]]:
    """The comparison set every method that consumes comparisons trains on, computed once and
    reused by every method that asks with the same settings (PPO's reward model and DPO train on
    exactly the same labels), as prompt/chosen/rejected rows.

    ``n`` is how many comparisons (labels) to spend, usually the cell's whole budget,
    ``int(ctx.ledger.remaining("comparisons"))``. With a scenario's preference data they are
    ``n`` of its pairs (:func:`drawn_comparisons`); else the start's frozen reference's (the
    SFT model's) ``cfg.k`` samples for each of ``n // (k(k-1)/2)`` training prompts, ranked by
    the panel and expanded to all their pairs, once per (start, budget, K, sampling settings).
    Either way the labels are charged to ``ctx.ledger``'s comparisons, and the samples to its
    rollouts, on every use."""
    holdout = getattr(cfg, "holdout_prompts", None)
    if ctx.scenario.preferences is not None:
        return drawn_comparisons(ctx, n, holdout)

    def compute(ledger: Ledger) -> list[dict[str, str]]:
        panel = ctx.scenario.make_panel(ledger, ctx.seed)
        return ranked_pairs(start.reference, feedback_prompts(ctx.scenario.train_prompts, holdout),
                            panel, n, cfg.k, ledger, seed=ctx.seed,
                            temperature=cfg.label_temperature, max_new_tokens=cfg.max_new_tokens)
    return ctx.stages.once(
        "comparisons", {"start": start.key, "n": n, "k": cfg.k, "seed": ctx.seed,
                        "temperature": cfg.label_temperature,
                        "max_new_tokens": cfg.max_new_tokens, "holdout": holdout},
        ctx.ledger, compute)


class RoundSettings(Protocol):
    """What :func:`feedback_rounds` reads of a method's config (PPO's, DPO's, RLAIF's); a
    ``holdout_prompts`` field, where a config has one (PPO's), is honoured too."""

    rounds: int  # labelling rounds; the label budget splits evenly
    k: int  # responses sampled and labelled per prompt
    label_temperature: float  # sampling temperature of those responses
    max_new_tokens: int  # their length limit


def feedback_rounds(ctx: TrainContext, start: Start, policy: Policy, cfg: RoundSettings,
                    judge: Judge | None = None) -> Iterator[tuple[int, list[dict]]]:
    """Each round's newly labelled pairs as ``(round, pairs)``, over ``cfg.rounds`` rounds that
    split the label budget evenly. The caller trains ``policy`` on a round's pairs before it
    asks for the next, so later rounds label samples of the policy as trained so far.

    With the panel (``judge`` None; the budget's comparisons), round 0 is the shared comparison
    set (:func:`shared_comparisons`: the labels every method that consumes comparisons trains
    on) and each later round ranks K samples of ``policy`` per prompt, on the training prompts
    a config's ``holdout_prompts`` leaves, by a panel made only when there are later rounds.
    With an AI ``judge`` (the budget's ai_comparisons), every round's pairs are judged in both
    orders on every training prompt, round 0's sampled from the start's frozen reference and
    later rounds' from ``policy``."""
    unit = "comparisons" if judge is None else "ai_comparisons"
    # later rounds' labeler (a first round trains on the shared set, which brings its own,
    # made from the cell's seed): its own root, so its label noise is not the shared set's
    panel = (ctx.scenario.make_panel(ctx.ledger, derive_seed(ctx.seed, "labels.panel"))
             if judge is None and cfg.rounds > 1 else None)
    per_round = int(ctx.ledger.remaining(unit)) // cfg.rounds
    sampling = {"temperature": cfg.label_temperature, "max_new_tokens": cfg.max_new_tokens}
    for rnd in range(cfg.rounds):
        if judge is not None:
            sampler = start.reference if rnd == 0 else policy
            yield rnd, judged_pairs(sampler, ctx.scenario.train_prompts, judge, per_round, cfg.k,
                                    ctx.ledger, seed=derive_seed(ctx.seed, "rlaif.labels.round",
                                                                 rnd), **sampling)
        elif rnd == 0:  # the SFT comparison set is shared: same labels, same count
            yield rnd, shared_comparisons(ctx, start, per_round, cfg)
        else:
            prompts = feedback_prompts(ctx.scenario.train_prompts,
                                       getattr(cfg, "holdout_prompts", None))
            yield rnd, ranked_pairs(policy, prompts, panel, per_round, cfg.k, ctx.ledger,
                                    seed=derive_seed(ctx.seed, "labels.round", rnd), **sampling)
