from tests.conftest import cache_dir, default_world, tiny_policy, tiny_world  # noqa: F401
