"""Speed targets (pytest-benchmark). In the normal suite these run once, as correctness smoke
(benchmarking is disabled by default); `pytest benchmarks --benchmark-enable` measures them and
checks the targets.

W6: building the world and pretraining the base takes at most 3 minutes on 2 CPU cores; a cached
rebuild at most 2 seconds."""

import pytest

from scenarios.micro import Micro, MicroOptions


def _target(benchmark, seconds: float) -> None:
    if benchmark.enabled:
        assert benchmark.stats.stats.mean <= seconds, (benchmark.stats.stats.mean, seconds)


def test_w6_cached_rebuild(benchmark, default_world, cache_dir, caplog):
    """A cached rebuild reads the verified cache: nothing is rebuilt or rewritten, and the
    weights are the ones the first build wrote."""
    import logging
    weights = default_world.base_model / "model.safetensors"
    before = weights.stat()
    with caplog.at_level(logging.INFO, logger="alignbench"):
        world = benchmark(lambda: Micro().build(MicroOptions(), cache_dir, progress=False))
    assert "building" not in caplog.text and "damaged" not in caplog.text
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert world.describe["base_model_sha256"] == default_world.describe["base_model_sha256"]
    _target(benchmark, 2.0)


@pytest.mark.slow
def test_w6_build_from_empty_cache(benchmark, tmp_path_factory):
    """Measured on the default world; the normal suite builds the tiny one (the default takes
    a minute and a half, and only its duration is the target)."""
    from tests.conftest import TINY_WORLD

    options = MicroOptions() if benchmark.enabled else MicroOptions(**TINY_WORLD)

    def build():
        return Micro().build(options, tmp_path_factory.mktemp("w6"), progress=False)
    world = benchmark.pedantic(build, rounds=1, iterations=1)
    assert (world.base_model / "model.safetensors").is_file()
    if benchmark.enabled:
        assert world.describe["timing"]["build_seconds"] <= 180, world.describe["timing"]
    _target(benchmark, 180.0)
