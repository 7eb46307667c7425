"""Best-of-n's reward model below chance against gold on pairs of its own picks
(labeler_agreement's rm_vs_gold on the best_of_n row) is selection, not a defect: the mechanism
in docs/analysis/best_of_n_agreement.py, pinned in its two-answer model (numpy, well under a
second)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "analysis" / "best_of_n_agreement.py"
spec = importlib.util.spec_from_file_location("best_of_n_agreement", SCRIPT)
analysis = importlib.util.module_from_spec(spec)
spec.loader.exec_module(analysis)
simulate = analysis.simulate


def test_per_sample_noise_alone_keeps_agreement_above_chance():
    """The winner's curse: picking the argmax of a noisy score lowers the agreement among the
    picks, but noise that is independent per sample cannot turn it below 0.5."""
    rates = [simulate(n, bias_sd=0.0, noise_sd=1.0)[0] for n in (1, 2, 4, 8, 16)]
    assert rates[0] > 0.7
    assert all(r > 0.6 for r in rates)
    assert rates[3] < rates[0]  # it falls with n


def test_a_systematic_per_prompt_error_turns_the_picks_below_chance():
    """The same reward model agrees with gold on most pairs of plain samples, and on fewer
    than half of the pairs of its best-of-8 picks: the decisive pairs that selection leaves are
    those of the prompts it ranks wrong."""
    plain, _ = simulate(1, bias_sd=1.5, noise_sd=0.3)
    picks, decisive = simulate(8, bias_sd=1.5, noise_sd=0.3)
    assert plain > 0.7
    assert picks < 0.45
    assert decisive < 0.15  # most pairs of picks are gold ties, left out


def test_a_reward_model_that_ranks_every_prompt_right_stays_above_chance():
    """Without the per-prompt error the same selection keeps the picks' agreement above 0.5
    (where it is right, the decisive pairs are those where one candidate set lacked the good
    answer, and it prefers the good pick)."""
    assert simulate(8, bias_sd=0.0, noise_sd=0.3)[0] > 0.9
