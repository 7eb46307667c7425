"""Known-answer tests for every metric, and agreement metrics against the reference packages."""

import math

import numpy as np
import pytest

from bench import stats
from evals import labeler_agreement as LA
from evals.kl import overoptimization
from evals.toxicity import rtp_metrics
from evals.truthfulqa import mc_scores
from evals.win_rate import length_controlled


def test_mc_scores_known_answers():
    # best answer first; it wins MC1
    mc1, mc2 = mc_scores([-1.0, -2.0, -3.0], [math.log(0.5), math.log(0.25), math.log(0.25)],
                         [1, 0, 0])
    assert mc1 == 1.0 and mc2 == pytest.approx(0.5)
    # a distractor scores highest: MC1 = 0; MC2 mass on the two true answers
    mc1, mc2 = mc_scores([-3.0, -1.0], [math.log(0.1), math.log(0.3), math.log(0.6)], [1, 1, 0])
    assert mc1 == 0.0 and mc2 == pytest.approx(0.4)
    # lm-eval takes argmax: an exact tie goes to the first choice
    assert mc_scores([-1.0, -1.0], [-1.0, -1.0], [1, 0])[0] == 1.0


def test_first_choice_policy_on_truthfulqa_schema():
    """A policy that always prefers the first listed choice gets MC1 = 1 and, with equal
    likelihood elsewhere, MC2 = its share."""
    lls = [0.0, -50.0, -50.0]
    mc1, mc2 = mc_scores(lls, [0.0, -50.0, -50.0], [1, 0, 0])
    assert mc1 == 1.0 and mc2 == pytest.approx(1.0)


def test_rtp_metrics_known_answer():
    s = np.array([[0.1, 0.6, 0.2], [0.0, 0.1, 0.3], [0.9, 0.9, 0.4]])
    m = rtp_metrics(s)
    assert m["emt"] == pytest.approx((0.6 + 0.3 + 0.9) / 3)
    assert m["probability"] == pytest.approx(2 / 3)
    assert m["mean"] == pytest.approx(s.mean())
    assert m["toxic_fraction"] == pytest.approx(3 / 9)
    assert m["emt_std"] == pytest.approx(np.std([0.6, 0.3, 0.9], ddof=1))


def test_win_rate_always_a_judge_and_length_control():
    pref = np.ones(50)  # a judge that always prefers the method
    assert length_controlled(pref, np.arange(50), np.zeros(50)) == pytest.approx(1.0, abs=1e-3)
    # judges whose preference follows the GLM the length control fits: logit P(method wins) =
    # quality + 3 * tanh(d / sd(d)), d = method length - reference length. The method writes
    # longer answers, so its raw win-rate is inflated; LC must recover sigmoid(quality)
    rng = np.random.default_rng(0)
    lb = rng.integers(5, 25, 4000)
    la = lb + rng.normal(4, 5, 4000).round().astype(int)
    d = (la - lb).astype(float)
    for quality in (0.0, 1.0):
        p = 1 / (1 + np.exp(-(quality + 3 * np.tanh(d / d.std()))))
        pref = (rng.random(4000) < p).astype(float)
        target = 1 / (1 + np.exp(-quality))
        assert pref.mean() > target + 0.08  # raw: length buys a win
        assert length_controlled(pref, la, lb) == pytest.approx(target, abs=0.03)
    # no length variation: LC equals raw
    assert length_controlled(np.array([1.0, 0.0, 1.0, 0.5]), np.ones(4), np.ones(4)) == 0.625


def test_agreement_perfect_and_random_labelers():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 500).astype(float)
    perfect = np.repeat(truth[:, None], 5, axis=1)
    inter, n, mat = LA.pairwise_agreement(perfect)
    assert inter == 1.0 and n == 500 * 10 and np.allclose(mat, 1.0)
    assert LA.leave_one_out(perfect) == 1.0
    assert LA.fleiss(perfect) == pytest.approx(1.0)
    assert LA.kalpha(perfect) == pytest.approx(1.0)
    random = rng.integers(0, 2, (4000, 5)).astype(float)
    assert LA.pairwise_agreement(random)[0] == pytest.approx(0.5, abs=0.02)
    assert LA.fleiss(random) == pytest.approx(0.0, abs=0.03)
    assert LA.kalpha(random) == pytest.approx(0.0, abs=0.03)


def test_ties_and_skips_are_excluded():
    labels = np.array([[1, 1, 0.5], [0, np.nan, 0], [1, 0, 1]])
    inter, n, _ = LA.pairwise_agreement(labels)
    # item 0: one comparable pair (agree); item 1: one pair (agree); item 2: 3 pairs, 1 agrees
    assert n == 5 and inter == pytest.approx(3 / 5)


@pytest.mark.parametrize("seed", range(5))
def test_agreement_metrics_equal_reference_packages(seed):
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 300)
    noisy = np.where(rng.random((300, 6)) < 0.7, truth[:, None], 1 - truth[:, None]).astype(float)
    table = np.stack([(noisy == 1).sum(1), (noisy == 0).sum(1)], 1)
    assert LA.fleiss(noisy) == pytest.approx(fleiss_kappa(table), abs=1e-12)
    assert LA.kalpha(noisy) == pytest.approx(
        krippendorff.alpha(reliability_data=noisy.T, level_of_measurement="nominal"), abs=1e-12)
    # pairwise agreement by brute force
    agree = [noisy[i, a] == noisy[i, b] for i in range(300) for a in range(6) for b in range(a + 1, 6)]
    assert LA.pairwise_agreement(noisy)[0] == pytest.approx(np.mean(agree))


def test_overoptimization_summary():
    # under 12 steps the window is one step: the raw peak and the last point
    curve = [{"step": s, "gold_reward": g, "proxy_reward": p}
             for s, g, p in [(0, 0.0, 0.0), (1, 1.0, 0.5), (2, 0.4, 2.0)]]
    o = overoptimization(curve)
    assert o["gold_peak"] == 1.0 and o["gold_peak_step"] == 1 and o["gold_drop"] == pytest.approx(0.6)
    assert o["proxy_gain_after_peak"] == pytest.approx(1.5) and o["window"] == 1


def test_overoptimization_is_smoothed_over_a_window():
    """16 steps: a window of 2. Known answer by hand: window means of gold
    [0,1,1,1, 2,2,2,2, 4,4,4,4, 1,1,0,0] peak at steps 8-9 (4.0) and end at 0.0."""
    gold = [0, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 1, 1, 0, 0]
    curve = [{"step": s, "gold_reward": g, "proxy_reward": s} for s, g in enumerate(gold)]
    o = overoptimization(curve)
    assert o["window"] == 2 and o["gold_peak"] == 4.0 and o["gold_peak_step"] == 9
    assert o["gold_final"] == 0.0 and o["gold_drop"] == 4.0
    assert o["proxy_final"] == 14.5 and o["proxy_gain_after_peak"] == 14.5 - 8.5
    # PPO's 40 steps and three rounds of 13 (39) smooth alike (flooring gave the 39 a window
    # of 4, and its drop more noise than the 40's): claim 3d compares exactly those
    for n, w in ((39, 5), (40, 5), (11, 1), (12, 2), (20, 2), (44, 6)):
        assert overoptimization([{"step": s, "gold_reward": 0.0, "proxy_reward": 0.0}
                                 for s in range(n)])["window"] == w, n


def test_smoothing_shrinks_the_drop_a_flat_noisy_curve_shows():
    """Pure noise around a flat gold reward: the 1.0 summary (raw peak minus last point) read
    a drop of ~2.1 noise SDs; the smoothed one reads about a third of that (0.77)."""
    rng = np.random.default_rng(0)
    raw, smooth = [], []
    for _ in range(400):
        g = rng.normal(0, 1, 40)
        raw.append(g.max() - g[-1])
        smooth.append(overoptimization([{"step": s, "gold_reward": v, "proxy_reward": 0}
                                        for s, v in enumerate(g)])["gold_drop"])
    assert 2.0 < np.mean(raw) < 3.0 and np.mean(smooth) < 0.45 * np.mean(raw)


def test_t_interval_known_answer():
    m, lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert math.isnan(stats.t_interval([1.0])[1])


def test_bootstrap_ci_covers_at_nominal_rate():
    """On simulated Bernoulli(0.6) data, the 95% percentile interval covers the truth about
    95% of the time (within Monte Carlo error)."""
    rng = np.random.default_rng(1)
    hits = 0
    trials = 300
    for i in range(trials):
        x = (rng.random(100) < 0.6).astype(float)
        lo, hi = stats.bootstrap_ci(x, n_boot=1000, seed=i)
        hits += lo <= 0.6 <= hi
    assert 0.90 <= hits / trials <= 0.98


def test_bootstrap_se_matches_analytic():
    rng = np.random.default_rng(2)
    x = rng.normal(size=400)
    assert stats.bootstrap_se(x) == pytest.approx(x.std(ddof=1) / 20, rel=0.1)


def test_paired_delta_is_the_t_interval_of_differences():
    d = stats.paired_delta([1.0, 2.0, 3.0], [0.0, 1.0, 1.0])
    assert d == stats.t_interval([1.0, 1.0, 2.0])
    with pytest.raises(ValueError):
        stats.paired_delta([1.0, 2.0], [1.0])


def test_win_rate_compares_only_the_references_asked_for(tiny_world, tiny_policy):
    from bench.api import EvalContext
    from bench.budget import Ledger
    from evals.win_rate import WinRate

    def ctx(options):
        return EvalContext(world=tiny_world, seed=0, trained=None, curves={},
                           references={"sft": tiny_policy, "base": tiny_policy},
                           options=WinRate.Options(samples_per_prompt=1, **options),
                           ledger=Ledger(), data=tiny_world.eval_data["win_rate"],
                           progress=False)

    both = WinRate().evaluate(tiny_policy, ctx({}))
    only = WinRate().evaluate(tiny_policy, ctx({"references": ["sft"]}))
    assert set(both.metrics) == {"vs_sft", "vs_base", "lc_vs_sft", "lc_vs_base"}
    assert set(only.metrics) == {"vs_sft", "lc_vs_sft"}
    assert only.metrics["vs_sft"] == both.metrics["vs_sft"]  # same samples, same judge
    with pytest.raises(Exception, match="references"):
        WinRate.Options(references=["gold"])


def test_length_control_survives_a_separated_fit(monkeypatch):
    """A near-separated resample (seen in the LC bootstrap on the real scenario) can drive the
    GLM's intercept below -709, where exp overflows: the rate is then 0, not an
    OverflowError, and a far positive intercept gives 1."""
    import statsmodels.api as sm

    for b0, want in ((-800.0, 0.0), (800.0, 1.0)):
        fit = type("Fit", (), {"params": np.array([b0, 1.0])})()
        monkeypatch.setattr(sm, "GLM", lambda *a, **k: type("G", (), {"fit": lambda s: fit})())
        assert length_controlled(np.array([0.0, 1.0, 0.0, 1.0]), np.array([1, 5, 2, 7]),
                                 np.array([3, 3, 3, 3])) == want
