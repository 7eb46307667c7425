"""Contract tests over everything registered."""

import inspect
import math

import pytest

from bench import registry
from bench.api import EvalOptions, MethodConfig
from bench.budget import HARD_UNITS
from bench.config import Budget


@pytest.mark.parametrize("name", registry.names("methods"))
def test_method_contract(name):
    m = registry.resolve("methods", name)
    assert issubclass(m.Config, MethodConfig)
    cfg = m.Config()  # every field has a default (paper defaults)
    for field, info in m.Config.model_fields.items():
        assert info.description or name == "base", f"{name}.{field} has no one-line doc"
    with pytest.raises(Exception):
        m.Config(not_a_field=1)  # unknown keys rejected
    assert list(inspect.signature(m.train).parameters) == ["start", "ctx", "config"]
    assert isinstance(m.shared_stage, bool)
    if m.starts_from != "base":  # a shared stage that itself starts from the base model
        stage = registry.resolve("methods", m.starts_from)
        assert stage.shared_stage and stage.starts_from == "base" and not m.shared_stage
    assert cfg == m.Config.model_validate(cfg.model_dump())
    # the preflight's declaration: hard units only, each an amount with its account
    plan = cfg.planned_spend(Budget().model_dump())
    assert set(plan) <= set(HARD_UNITS)
    for amount, why in plan.values():
        assert amount >= 0 and isinstance(why, str) and why


@pytest.mark.parametrize("name", registry.names("evals"))
def test_eval_contract(name):
    e = registry.resolve("evals", name)
    assert isinstance(e.version, str) and e.version
    assert e.metrics and all(isinstance(v, bool) for v in e.metrics.values())
    assert list(inspect.signature(e.evaluate).parameters) == ["policy", "ctx"]
    assert issubclass(e.Options, EvalOptions)
    e.Options()  # every option has a default
    for field, info in e.Options.model_fields.items():
        assert info.description, f"{name}.{field} has no one-line doc"
    with pytest.raises(Exception):
        e.Options(not_an_option=1)
    for m, (low, high) in getattr(e, "bounds", {}).items():  # a range the report keeps to
        assert m in e.metrics and (low, high) != (None, None), (name, m)
        assert all(x is None or math.isfinite(x) for x in (low, high)), (name, m)
        assert low is None or high is None or low < high, (name, m)


# a tiny build of every registered scenario: a scenario missing here fails the contract test
TINY_SCENARIO_FIXTURES = {"micro": "tiny_world", "real": "real_world"}


@pytest.mark.parametrize("name", registry.names("scenarios"))
def test_scenario_contract(name, request):
    """Build every registered scenario small, and use each part of the World it hands over."""
    from bench.api import World
    from bench.budget import Ledger
    s = registry.resolve("scenarios", name)
    s.Options()  # defaults exist
    assert name in TINY_SCENARIO_FIXTURES, f"add a tiny build of scenario {name!r} here"
    w = request.getfixturevalue(TINY_SCENARIO_FIXTURES[name])
    assert isinstance(w, World) and w.key and w.describe
    policy = w.load_policy(w.base_model)
    assert policy.generate(w.train_prompts[:2], max_new_tokens=3, temperature=0.0) \
        == policy.generate(w.train_prompts[:2], max_new_tokens=3, temperature=0.0)
    demos = w.demonstrations(3, 0)
    assert len(demos) == 3 and all(set(d) == {"prompt", "completion"} for d in demos)
    assert demos == w.demonstrations(3, 0)  # seeded
    ledger = Ledger(caps={"comparisons": 3})
    order = w.make_panel(ledger, 0).rank(w.train_prompts[0], [" a", " b", " c"])
    assert sorted(order) == [0, 1, 2] and ledger.spent["comparisons"] == 3  # K(K-1)/2, charged
    ev = w.eval_data  # keyed by eval name; every built-in eval that reads data gets some
    assert ev["truthfulqa"].items and ev["truthfulqa"].source["sha256"]
    assert all(ev[name].prompts for name in ("toxicity", "win_rate", "kl", "labeler_agreement"))
    assert all(0 <= x <= 1 for x in w.toxicity_scorer.score(["hello", "you idiot"]))
    judge = w.make_ai_judge(policy, ["be honest"], Ledger(caps={"ai_comparisons": 1}))
    p = judge.prefer([w.train_prompts[0]], [" yes"], [" no"])
    assert len(p) == 1 and 0 <= p[0] <= 1
    assert_prompts_are_chat_formatted(w, policy)


def assert_prompts_are_chat_formatted(world, policy):
    """Prompts arrive in one form (bench.api.world): every prompt a scenario hands methods and
    evals is already in the model's chat template, so nobody wraps it again."""
    before, after = policy.format_chat(["\x00"])[0].split("\x00")
    given = {"train_prompts": world.train_prompts,
             "demonstrations": [d["prompt"] for d in world.demonstrations(5, 0)],
             **{f"eval_data[{k!r}]": d.prompts for k, d in world.eval_data.items()}}
    if world.preferences is not None:
        given["preferences"] = [r["prompt"] for r in world.preferences.draw(5, 0)]
    given |= {f"eval_data[{k!r}].items": [r["prompt"] for r in d.items]  # pairs held out
              for k, d in world.eval_data.items() if d.items and isinstance(d.items[0], dict)}
    for where, prompts in given.items():
        raw = [p for p in prompts if not (p.startswith(before) and p.endswith(after))]
        assert not raw, f"{where} holds prompts outside the chat template: {raw[:2]}"
