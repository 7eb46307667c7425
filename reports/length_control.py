"""Length-controlled win-rates fitted jointly over every cell of a matrix.

Each cell's win_rate eval fits AlpacaEval 2's length model on its own pairs, without the
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

from typing import Any, NamedTuple, Sequence

import numpy as np

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


def cell_pairs(record: dict[str, Any], name: str) -> Pairs | None:
    """The pairs a win_rate record stored for ``vs_REF`` (``name``), or None (an older record,
    a cell that did not compare against that reference, a malformed entry)."""
    extra = ((record.get("evals") or {}).get("win_rate") or {}).get("extra") or {}
    pairs, ids = (extra.get("pairs") or {}).get(name), extra.get("prompt_ids")
    try:
        if not all(isinstance(p, str) for p in ids) or not all(
                isinstance(i, int) and 0 <= i < len(ids) for i in pairs["prompt"]):
            return None  # a malformed record: no hashable identity, or an index out of range
        prompt = [ids[i] for i in pairs["prompt"]]
        pref, la, lb = pairs["pref"], pairs["len_method"], pairs["len_reference"]
        if not (len(prompt) == len(pref) == len(la) == len(lb) > 0):
            return None
        return Pairs(prompt, [float(v) for v in pref],
                     [float(a) - float(b) for a, b in zip(la, lb)])
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def matrix_length_control(ok: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"vs_sft": {cell key: joint LC rate}, ...}`` over the cells that stored their pairs
    (none for a reference fewer than two cells compared against: nothing to pool)."""
    names = sorted({n for r in ok for n in ((((r.get("evals") or {}).get("win_rate") or {})
                                             .get("extra") or {}).get("pairs") or {})})
    out = {}
    for name in names:
        have = [(r["key"], p) for r in ok if (p := cell_pairs(r, name)) is not None]
        if len(have) >= 2:
            rates = joint_length_controlled([p for _, p in have])
            out[name] = {k: v for (k, _), v in zip(have, rates)}
    return out
