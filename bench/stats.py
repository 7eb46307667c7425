"""Uncertainty shared by evals and reports: bootstrap over examples, t-intervals over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

N_BOOT = 2000  # metrics.md asks for at least 1,000 resamples


def bootstrap_se(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0) -> float:
    """Bootstrap standard error of the mean over examples (0 for fewer than two)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return float(means.std(ddof=1))


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean over examples."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan)
    if len(x) == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def t_interval(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval over seeds: (mean, low, high).

    With one seed the interval is undefined and returned as (mean, nan, nan): the report says
    so rather than showing a zero-width interval."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if len(x) < 2:
        return (m, math.nan, math.nan)
    half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return (m, m - half, m + half)


def paired_delta(a: Sequence[float], b: Sequence[float], *, level: float = 0.95
                 ) -> tuple[float, float, float]:
    """Mean of a - b over paired seeds with a t-interval."""
    return t_interval([x - y for x, y in zip(a, b, strict=True)], level=level)
