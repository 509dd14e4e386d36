"""Shared, session-scoped fixtures: compiled envs and small real datasets (compile once)."""

from __future__ import annotations

import os

# Tests run on the CPU; two host devices let data-parallel code be exercised on one machine.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

from eaq.data import DatasetMeta, EpisodeBatch  # noqa: E402
from eaq.env import make_env  # noqa: E402
from eaq.env.rollout import make_rollout, random_legal_policy  # noqa: E402


@pytest.fixture(scope="session")
def env3m():
    return make_env("3m")


@pytest.fixture(scope="session")
def random_rollout_3m(env3m):
    return jax.jit(make_rollout(env3m, random_legal_policy), static_argnums=2)


@pytest.fixture(scope="session")
def random_batch_3m(env3m, random_rollout_3m) -> EpisodeBatch:
    """16 real random-policy 3m episodes."""
    ep = random_rollout_3m((), jax.random.PRNGKey(0), 16)
    meta = DatasetMeta(spec=env3m.spec, quality="random", generator={"policy": "random"}, seed=0)
    return EpisodeBatch.from_arrays(ep, meta)
