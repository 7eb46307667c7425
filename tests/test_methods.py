"""Pure parts of the methods beyond SFT, PPO, DPO and RLAIF, with known answers."""

import pytest

from methods.common import warmup
from methods.kto import unpaired


def test_kto_labels_from_ranked_pairs_top_half_desirable_median_dropped():
    ranked = ["a", "b", "c", "d", "e"]  # best first, as the panel ranked them
    pairs = [{"prompt": "p", "chosen": ranked[i], "rejected": ranked[j]}
             for i in range(5) for j in range(i + 1, 5)]
    got = {(e["completion"], e["label"]) for e in unpaired(pairs)}
    assert got == {("a", True), ("b", True), ("d", False), ("e", False)}
    pairs4 = [p for p in pairs if "e" not in (p["chosen"], p["rejected"])]  # K=4: no median
    assert {(e["completion"], e["label"]) for e in unpaired(pairs4)} == {
        ("a", True), ("b", True), ("c", False), ("d", False)}


def test_kto_balances_its_classes_as_the_paper_asks():
    from methods.kto import class_weights
    assert class_weights(10, 30, 1.0, 1.0, True) == (3.0, 1.0)  # lambda_D n_D / lambda_U n_U = 1
    assert class_weights(10, 30, 1.0, 1.0, False) == (1.0, 1.0)
    assert class_weights(10, 30, 1.2, 1.0, True) == (3.6, 1.0)  # the configured ratio 1.2 kept
    assert class_weights(4, 0, 1.0, 1.0, True) == (1.0, 1.0)  # one class only


def test_warmup_never_swallows_a_one_step_run():
    assert warmup(0.05, 32, 32, 1.0) == 0.0  # one step: it would train at lr 0
    assert warmup(0.05, 33, 32, 1.0) == 0.05  # two steps
    assert warmup(0.05, 20, 32, 2.0) == 0.05  # one batch, two epochs: two steps
    assert warmup(0.05, 10, 32, 0.5) == 0.0


def _cells(method: str, values: list[float], metric: str = "win_rate.vs_sft") -> list[dict]:
    return [{"method": method, "seed": s, "metrics": {metric: v}, "uncertainty": {}}
            for s, v in enumerate(values)]


def test_first_probabilities_known_answers():
    from reports.ranking import first_probabilities
    # a always ahead at every seed: first in every resample
    assert first_probabilities({"a": [0.6, 0.7, 0.8], "b": [0.5, 0.6, 0.7]}) == \
        {"a": 1.0, "b": 0.0}
    # identical rows tie in every resample and share it
    p = first_probabilities({"a": [0.6, 0.4], "b": [0.6, 0.4]})
    assert p == {"a": 0.5, "b": 0.5}
    # two seeds, each row best at one: a resample's mean favours a when it draws seed 0
    # twice (1/4), b when seed 1 twice (1/4), and ties otherwise (1/2): 1/2 each overall
    p = first_probabilities({"a": [0.9, 0.1], "b": [0.1, 0.9]}, n_boot=20000)
    assert abs(p["a"] - 0.5) < 0.02 and abs(p["a"] + p["b"] - 1) < 1e-9
    assert first_probabilities({"a": [0.9], "b": [0.1]}) == {"a": None, "b": None}
    # lower is better
    assert first_probabilities({"a": [1.0, 2.0], "b": [3.0, 4.0]}, higher=False)["a"] == 1.0


def test_rank_orders_rows_and_resolves_only_what_the_seeds_support():
    from reports.ranking import rank
    groups = {"sft": _cells("sft", [0.50, 0.50, 0.50]),
              "ppo": _cells("ppo", [0.60, 0.61, 0.62]),  # ahead of sft by 0.10 +- 0.01
              "dpo": _cells("dpo", [0.70, 0.40, 0.55])}  # mean 0.55, noisy
    rk = rank(groups, "win_rate.vs_sft")  # the metric an eval declares for ranking
    assert [r["label"] for r in rk["rows"]] == ["ppo", "dpo", "sft"]
    pairs = {(p["a"], p["b"]): p for p in rk["pairs"]}
    assert pairs["ppo", "sft"]["resolved"] and abs(pairs["ppo", "sft"]["delta"] - 0.11) < 1e-9
    assert not pairs["dpo", "sft"]["resolved"] and not pairs["ppo", "dpo"]["resolved"]
    assert abs(sum(r["p_first"] for r in rk["rows"]) - 1) < 1e-9
    assert rk["rows"][-1]["p_first"] == 0.0  # sft is never first
    assert rank({"sft": groups["sft"]}, "win_rate.vs_sft") is None


# ---------------------------------------------------------------- best-of-n, rsft, orpo, kto


class _Counter:
    """A base policy whose i-th sample of a call is "s<i>", and a reward that likes one index."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, *, max_new_tokens, temperature=1.0, seed=0):
        self.calls.append((len(prompts), temperature, seed))
        return [f" s{i}" for i in range(len(prompts))]

    def logprob(self, prompts, completions):
        return [-1.0] * len(prompts)

    def format_chat(self, m):
        return m


def test_best_of_n_returns_the_reward_models_favourite_of_its_own_n_samples():
    from bench.api import SelectingPolicy
    from methods.best_of_n import BestOfNPolicy
    base = _Counter()
    liked = {" s2": 5.0, " s3": 9.0, " s4": 1.0}  # prompt 0 samples s0-s2, prompt 1 s3-s5
    bon = BestOfNPolicy(base, lambda p, c: [liked.get(x, 0.0) for x in c], n=3)
    out = bon.generate(["a", "b"], max_new_tokens=4, temperature=0.7, seed=11)
    assert out == [" s2", " s3"]
    assert base.calls == [(6, 0.7, 11)]  # n per prompt, at the caller's temperature and seed
    assert bon.generate(["a", "b"], max_new_tokens=4, temperature=0.0, seed=3) == [" s0", " s1"]
    assert base.calls[-1] == (2, 0.0, 3)  # greedy: one candidate each, the base's answer
    assert bon.logprob(["a"], [" x"]) == [-1.0]  # the base's likelihood
    assert isinstance(bon, SelectingPolicy) and not isinstance(base, SelectingPolicy)
    tie = BestOfNPolicy(_Counter(), lambda p, c: [0.0] * len(c), n=4)
    assert tie.generate(["a"], max_new_tokens=1) == [" s0"]  # first on a tie


def test_best_of_n_kl_bound_known_answers():
    import math

    from evals.kl import best_of_n_kl
    assert best_of_n_kl(1) == 0.0
    assert math.isclose(best_of_n_kl(2), math.log(2) - 0.5)
    assert math.isclose(best_of_n_kl(8), 1.2044415416798357, rel_tol=1e-12)


def test_rsft_keeps_each_prompts_best_candidate():
    from methods.rsft import best_of
    assert best_of([["a", "b", "c"], ["d", "e"]], [[0.1, 0.9, 0.5], [2.0, 2.0]]) == ["b", "d"]


def test_orpo_demonstrations_are_the_chosen_side():
    from methods.orpo import ORPOConfig, demonstration_pairs
    demos = [{"prompt": "p1", "completion": " good"}, {"prompt": "p2", "completion": " fine"}]
    assert demonstration_pairs(demos, [" bad", " worse"]) == [
        {"prompt": "p1", "chosen": " good", "rejected": " bad"},
        {"prompt": "p2", "chosen": " fine", "rejected": " worse"}]
    plan = ORPOConfig(k=4).planned_spend({"comparisons": 20, "demonstrations": 16})
    assert plan["demonstrations"][0] == 16 and plan["rollouts"][0] == 12 + 16
    assert set(ORPOConfig(demonstration_pairs=False).planned_spend(
        {"comparisons": 20, "demonstrations": 16})) == {"rollouts"}


def test_orpo_likelihood_term_imitates_mostly_base_samples_at_equal_labels(monkeypatch):
    """Why ORPO from base reads below the SFT stage (docs/analysis/orpo_from_base.py): its
    likelihood term is a mean over the chosen side of every pair, and at the zoo's budget
    (1000 comparisons ranked at k = 5, 64 demonstrations) 1000 of the 1064 chosen sides are the
    base model's own samples, so the demonstrations SFT learns from weigh one in seventeen."""
    from types import SimpleNamespace

    import methods.orpo as orpo
    from bench.budget import Ledger

    base = _Counter()
    demos = [{"prompt": f"q{i}", "completion": f" demo{i}"} for i in range(64)]
    panel = SimpleNamespace(rank=lambda prompt, responses: list(range(len(responses))))
    scenario = SimpleNamespace(preferences=None, train_prompts=[f"q{i}" for i in range(200)],
                               make_panel=lambda ledger, seed: panel,
                               demonstrations=lambda n, seed: demos[:n])
    ctx = SimpleNamespace(scenario=scenario, seed=0, ledger=Ledger(caps={
        "comparisons": 1000, "demonstrations": 64, "rollouts": 5000}))
    start = SimpleNamespace(reference=base, trainable=lambda: object())
    seen = {}
    monkeypatch.setattr(orpo, "train_reference_free",
                        lambda *a, **kw: seen.setdefault("pairs", a[3]))
    orpo.ORPO().train(start, ctx, orpo.ORPOConfig())
    chosen = [p["chosen"] for p in seen["pairs"]]
    assert len(chosen) == 1064
    assert sum(c.startswith(" demo") for c in chosen) == 64
    assert sum(c.startswith(" s") for c in chosen) == 1000  # the base model's samples


def test_robust_dpo_needs_its_flip_rate_stated_before_anything_runs():
    import pytest

    from methods.dpo import DPOConfig, flip_rate
    from methods.rlaif import RLAIFConfig
    assert flip_rate(DPOConfig(loss_type="robust", label_smoothing=0.05)) == 0.05
    assert flip_rate(DPOConfig()) == 0.0  # sigmoid: TRL's default, as before
    budget = {"comparisons": 20, "ai_comparisons": 20}
    for cfg in (DPOConfig(loss_type="robust"), RLAIFConfig(loss_type="robust")):
        with pytest.raises(ValueError, match="label_smoothing"):
            cfg.planned_spend(budget)  # the preflight refuses it, in one line
    assert DPOConfig(loss_type="robust", label_smoothing=0.1).planned_spend(budget)


def test_panel_ratings_charge_one_unit_each_and_favour_true_answers(tiny_world):
    """Binary ratings: a demonstration (a true, clean answer) is usually acceptable, a garbled
    answer usually not; each rating is one ``ratings`` unit, and a cap stops them."""
    import pytest

    from bench.api import Rater
    from bench.budget import BudgetExceeded, Ledger
    ledger = Ledger(caps={"ratings": 200})
    panel = tiny_world.make_panel(ledger, 0)
    assert isinstance(panel, Rater)
    demos = tiny_world.demonstrations(5, 0)
    good = panel.rate([d["prompt"] for d in demos] * 20, [d["completion"] for d in demos] * 20)
    bad = panel.rate([d["prompt"] for d in demos] * 20, [" the the the"] * 100)
    assert ledger.spent["ratings"] == 200 and ledger.spent["comparisons"] == 0
    assert sum(good) / 100 > 0.7 and sum(bad) / 100 < 0.3, (sum(good), sum(bad))
    with pytest.raises(BudgetExceeded):
        panel.rate(["p"], [" x"])


def test_trainer_logs_become_the_cells_curve_under_shared_names():
    from types import SimpleNamespace

    from methods.common import CurveFromLogs
    curve = []
    cb = CurveFromLogs(curve)
    state = SimpleNamespace(global_step=5)
    cb.on_log(None, state, None, logs={"loss": 0.7, "rewards/margins": 0.2, "kl": 0.01,
                                       "learning_rate": 1e-4, "epoch": 0.5})
    # the end-of-training log: DPO's and KTO's log() merge their leftover rewards into it
    cb.on_log(None, SimpleNamespace(global_step=7), None,
              logs={"train_runtime": 3.0, "train_loss": 0.6, "rewards/margins": 0.3})
    cb.on_log(None, SimpleNamespace(global_step=10), None, logs={"loss": 0.5, "margin": 1.0})
    assert curve == [{"step": 5.0, "loss": 0.7, "reward_margin": 0.2, "kto_kl": 0.01},
                     {"step": 10.0, "loss": 0.5, "reward_margin": 1.0}]


def test_headline_resolves_only_in_the_best_rows_favour_and_names_ties():
    """The best row by its mean over its own seeds can be the worse one on the seeds it shares
    with the runner-up: then it is not resolved. A tie names every tied row, and the
    runner-up is the best row outside the tie. An A/A cell (a null value) is not a contender."""
    from reports.ranking import headline

    def cells(method, values, null=None):
        return [{"method": method, "seed": s, "metrics": {"e.x": v}, "uncertainty": {},
                 "evals": {"e": {"extra": {"null": {"x": null}}}} if null is not None else {}}
                for s, v in enumerate(values)]
    rev = headline({"a": cells("a", [0.50, 0.51, 0.50, 0.9, 0.9]),
                    "b": cells("b", [0.600, 0.601, 0.602])}, {"e.x": True}, {}, ["e.x"])[0]
    assert rev["best"] == "a" and rev["delta"] < 0 and rev["d_hi"] < 0 and not rev["resolved"]
    tie = headline({"a": cells("a", [0.7] * 3), "b": cells("b", [0.7] * 3),
                    "c": cells("c", [0.6, 0.62, 0.61])}, {"e.x": True}, {}, ["e.x"])[0]
    assert tie["tied"] == ["a", "b"] and tie["runner_up"] == "c" and not tie["resolved"]
    aa = headline({"sft": cells("sft", [0.0] * 3, null=0.0), "dpo": cells("dpo", [0.3] * 3),
                   "ppo": cells("ppo", [0.5, 0.6, 0.55])}, {"e.x": False}, {}, ["e.x"])[0]
    assert aa["best"] == "dpo" and aa["runner_up"] == "ppo"


def test_a_held_out_prompt_family_gets_no_feedback():
    """holdout_prompts (a regular expression) leaves its family out of the feedback prompts;
    one that matches none or all of them, or is no regular expression, is refused; RLAIF's
    PPO cannot hold one out (its judge labels every prompt)."""
    from pydantic import ValidationError

    from methods.feedback import feedback_prompts
    from methods.ppo import PPOConfig
    from methods.rlaif import RLAIFConfig
    prompts = ["what is the sound of bo ?", "what is the color of bo ?", "tell me the sound of ka ."]
    assert feedback_prompts(prompts, None) is prompts
    assert feedback_prompts(prompts, "the sound of") == ["what is the color of bo ?"]
    for bad, says in (("the smell of", "matches no training prompt"),
                      ("of", "matches every training prompt")):
        with pytest.raises(ValueError, match=says):
            feedback_prompts(prompts, bad)
    with pytest.raises(ValidationError, match="not a regular expression"):
        PPOConfig(holdout_prompts="the (sound")
    with pytest.raises(ValidationError, match="judge labels every training prompt"):
        RLAIFConfig(optimizer="ppo", ppo={"holdout_prompts": "the sound of"})


def test_schedules_are_config_fields_with_the_defaults_each_method_trained_with():
    """Every TRL-backed method's schedule and warm-up are config fields whose defaults are
    what the methods trained with before they were fields (cosine, 5%), and an unknown
    schedule is refused when the config is read, not when its stage trains."""
    from pydantic import ValidationError

    from methods.dpo import DPOConfig
    from methods.kto import KTOConfig
    from methods.orpo import ORPOConfig
    from methods.reward_model import RewardModelConfig
    from methods.rlaif import RLAIFConfig
    from methods.sft import SFTConfig
    from methods.simpo import SimPOConfig
    from methods.trl_train import schedule
    for cls in (DPOConfig, KTOConfig, ORPOConfig, RLAIFConfig, SFTConfig, SimPOConfig):
        cfg = cls()
        assert (cfg.lr_scheduler_type, cfg.warmup_ratio) == ("cosine", 0.05), cls
        assert schedule(cfg, 64, 32, 2.0) == {"lr_scheduler_type": "cosine",
                                             "warmup_steps": 0.05}
        assert schedule(cfg, 32, 32, 1.0)["warmup_steps"] == 0.0  # one step: no warm-up
        with pytest.raises(ValidationError, match="no learning-rate schedule"):
            cls(lr_scheduler_type="cosine_annealing")
    rm = RewardModelConfig()
    assert (rm.rm_lr_scheduler_type, rm.rm_warmup_ratio) == ("cosine", 0.05)
    with pytest.raises(ValidationError, match="no learning-rate schedule"):
        RewardModelConfig(rm_lr_scheduler_type="warm")


# the methods whose policy trains with no TRL trainer: nothing trained, or PPO's own loop at a
# constant learning rate; best-of-n trains only its reward model (the rm_ fields)
NO_TRL_POLICY_STAGE = {"base", "large_base", "ppo", "best_of_n"}


def test_every_trl_method_exposes_its_schedule_and_refuses_an_unknown_one():
    """Each built-in method whose policy a TRL trainer trains has its schedule and warm-up as
    fields (the online trainers' default is TRL's: linear, no warm-up, as they trained before
    the fields), and every schedule field of every config is checked when the config is read
    (rsft's two schedules included: pydantic keeps one validator per name)."""
    from pydantic import ValidationError

    from bench import registry
    from methods.trl_train import Schedule
    trl = set(registry.builtin_names("methods")) - NO_TRL_POLICY_STAGE
    assert {"sft", "dpo", "kto", "simpo", "orpo", "rloo", "grpo", "rsft", "rlaif"} <= trl
    for name in sorted(trl):
        assert issubclass(registry.resolve("methods", name).Config, Schedule), name
    for name in ("rloo", "grpo"):
        cfg = registry.resolve("methods", name).Config()
        assert (cfg.lr_scheduler_type, cfg.warmup_ratio) == ("linear", 0.0), name
    for name in registry.builtin_names("methods"):
        config = registry.resolve("methods", name).Config
        for key in ("lr_scheduler_type", "rm_lr_scheduler_type"):
            if key in config.model_fields:
                with pytest.raises(ValidationError, match="no learning-rate schedule"):
                    config(**{key: "cosine_annealing"})
