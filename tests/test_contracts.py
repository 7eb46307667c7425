"""Contract tests over everything registered."""

import inspect

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
    assert list(inspect.signature(m.train).parameters) == ["base", "ctx", "config"]
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


@pytest.mark.parametrize("name", registry.names("scenarios"))
def test_scenario_contract(name):
    s = registry.resolve("scenarios", name)
    s.Options()  # defaults exist
    assert callable(s.build)
