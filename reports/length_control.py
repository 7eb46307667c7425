"""Length-controlled win-rates fitted jointly over every cell of a matrix, from the judged
pairs an eval declares it stores (:class:`bench.api.evaluation.LengthPairs`).

An eval such as win_rate fits AlpacaEval 2's length model on its own pairs, without the
prompt-difficulty term (one cell has too few pairs per prompt to estimate it). A matrix has
many generators answering the same prompts, so the report fits that term across all of them:

    logit P(cell c's answer to prompt p beats the reference) = θ_c + γ_p + β_c tanh(Δlen / σ)

with σ the spread of the length differences over the whole matrix, and reads each cell's
length-controlled rate as its mean over its pairs of sigmoid(θ_c + γ_p): the win-rate it
would have at equal length, averaged on the probability scale and weighted like the raw rate
(Dubois et al. 2024 average the same way over instructions, one pair each). With no length
effect it equals the raw rate exactly: that mean is θ_c's score equation, which has no prior.

The fit is penalized maximum likelihood with N(0, PROMPT_SD²) and N(0, SLOPE_SD²) priors on γ
and β (a fixed effect per prompt diverges on a prompt every cell wins, and the prior also fixes
the offset θ and γ share).
Written here because no library at hand fits a fractional-response logit with crossed fixed
effects and a ridge on some of them: statsmodels' GLM has no per-parameter penalty and its
``fit_regularized`` is elastic-net coordinate descent, slow at hundreds of parameters.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from bench.stats import report_interval
from reports.intervals import mean_interval
from reports.model import LengthRow
from reports.records import Record, eval_extra, se

PROMPT_SD = 1.0  # the N(0, PROMPT_SD^2) prior on each prompt's difficulty (logit scale)
SLOPE_SD = 3.0  # the N(0, SLOPE_SD^2) prior on each cell's length slope: weak, as slopes are large
WARN = 0.10  # AlpacaEval 2's safeguard: LC more than 10 points from the raw rate is flagged


class Pairs(NamedTuple):
    """One cell's judged pairs against one reference."""
    prompt: Sequence[str]  # the prompt's identity, per pair
    pref: Sequence[float]  # P(the cell's answer wins), 0 / 0.5 / 1 or a probability
    d_len: Sequence[float]  # the cell's answer's length minus the reference's, per pair


def joint_length_controlled(cells: Sequence[Pairs]) -> list[float]:
    """Each cell's length-controlled win-rate under the joint model above, in order."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    ids = {p: i for i, p in enumerate(dict.fromkeys(p for c in cells for p in c.prompt))}
    cell = np.concatenate([np.full(len(c.pref), k) for k, c in enumerate(cells)]).astype(int)
    prompt = np.array([ids[p] for c in cells for p in c.prompt], dtype=int)
    y = np.concatenate([np.asarray(c.pref, float) for c in cells])
    d = np.concatenate([np.asarray(c.d_len, float) for c in cells])
    x = np.tanh(d / d.std()) if d.std() > 0 else np.zeros_like(d)
    n_c, n_p = len(cells), len(ids)

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        theta, beta, gamma = w[:n_c], w[n_c:2 * n_c], w[2 * n_c:]
        z = theta[cell] + gamma[prompt] + beta[cell] * x
        ll = y * log_expit(z) + (1 - y) * log_expit(-z)
        r = expit(z) - y  # d(-ll)/dz
        grad = np.concatenate([np.bincount(cell, r, n_c),
                               np.bincount(cell, r * x, n_c) + beta / SLOPE_SD ** 2,
                               np.bincount(prompt, r, n_p) + gamma / PROMPT_SD ** 2])
        penalty = beta @ beta / (2 * SLOPE_SD ** 2) + gamma @ gamma / (2 * PROMPT_SD ** 2)
        return float(-ll.sum() + penalty), grad

    fit = minimize(nll, np.zeros(2 * n_c + n_p), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000})
    theta, gamma = fit.x[:n_c], fit.x[2 * n_c:]
    return [float(expit(theta[k] + gamma[prompt[cell == k]]).mean()) for k in range(n_c)]


def cell_pairs(record: Record, ev: str, decl: dict[str, str], name: str) -> Pairs | None:
    """The pairs eval ``ev`` stored for its raw win-rate ``name`` (``vs_sft``) where its
    ``decl`` (:class:`bench.api.evaluation.LengthPairs`, as stored) says, or None (an older
    record, a cell that did not compare against that reference, a malformed entry)."""
    extra = eval_extra(record, ev)
    try:
        pairs, ids = (extra.get(decl["pairs"]) or {}).get(name), extra.get(decl["prompt_ids"])
        if not all(isinstance(p, str) for p in ids) or not all(
                isinstance(i, int) and 0 <= i < len(ids) for i in pairs["prompt"]):
            return None  # a malformed record: no hashable identity, or an index out of range
        prompt = [ids[i] for i in pairs["prompt"]]
        pref, la, lb = pairs["pref"], pairs["len_method"], pairs["len_reference"]
        if not (len(prompt) == len(pref) == len(la) == len(lb) > 0):
            return None
        return Pairs(prompt, [float(v) for v in pref],
                     [float(a) - float(b) for a, b in zip(la, lb)])
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return None


def matrix_length_control(ok: list[Record], sources: dict[str, dict[str, str]]
                          ) -> dict[tuple[str, str], dict[str, float]]:
    """``{(eval, "vs_sft"): {cell key: joint LC rate}, ...}`` over the cells that stored their
    pairs, for each eval that declares them (``sources``: :func:`reports.declared.
    length_sources`); none for a rate fewer than two cells stored pairs of (nothing to pool)."""
    out = {}
    for ev, decl in sources.items():
        stored = [eval_extra(r, ev).get(decl["pairs"]) for r in ok]
        for name in sorted({n for x in stored if isinstance(x, dict) for n in x}):
            have = [(r["key"], p) for r in ok if (p := cell_pairs(r, ev, decl, name)) is not None]
            if len(have) >= 2:
                rates = joint_length_controlled([p for _, p in have])
                out[ev, name] = {k: v for (k, _), v in zip(have, rates)}
    return out


def length_rows(groups: dict[str, list[Record]], joint: dict[tuple[str, str], dict[str, float]],
                sources: dict[str, dict[str, str]]) -> list[LengthRow]:
    """Per rate and row: the raw win-rate, the eval's own length-controlled rate, the rate
    with each prompt's difficulty fitted jointly over the matrix, each with its interval over
    seeds, and the joint rate's gap from the raw one (``warn`` past AlpacaEval 2's 10
    points)."""
    out = []
    for (ev, name), by_key in joint.items():
        raw, lc = f"{ev}.{name}", f"{ev}.{sources[ev]['lc_prefix']}{name}"
        for g, rs in groups.items():
            have = [r for r in rs if r["key"] in by_key]
            if not have:
                continue
            # the joint rate, floored by the per-cell LC's own SE (the same length model on the
            # same pairs): the seed spread alone ignores the evaluation noise each seed carries,
            # and read narrower than the raw rate
            joint_rate = report_interval([by_key[r["key"]] for r in have],
                                         [se(r, lc) for r in have], (0.0, 1.0))
            gaps = [by_key[r["key"]] - r["metrics"][raw] for r in have
                    if r["metrics"].get(raw) is not None]
            gap = sum(gaps) / len(gaps) if gaps else None
            out.append(LengthRow(name, g, len(have), _interval(have, raw), _interval(have, lc),
                                 joint_rate, gap, gap is not None and abs(gap) > WARN))
    return out


def _interval(rs: list[Record], metric: str) -> tuple[float, float, float] | None:
    """A rate's mean and interval over the cells that have it (the table's,
    :func:`reports.intervals.mean_interval`), or None when none does."""
    use = [r for r in rs if r["metrics"].get(metric) is not None]
    if not use:
        return None
    est = mean_interval(use, metric, (0.0, 1.0))
    return est.mean, est.lo, est.hi
