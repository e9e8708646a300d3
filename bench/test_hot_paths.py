"""pytest-benchmark suites for perfkit's hot paths. Run: `pytest bench/`.

Each benchmark stores agent-steps/s or ns/access in `extra_info`, so the saved JSON
(`--benchmark-autosave`) carries the unit a reader wants next to pytest-benchmark's seconds.
"""

import numpy as np
import pytest

from envs.arena import ArenaEnv, preset
from envs.curriculum import make_curriculum, wrap

STEPS = 200


@pytest.fixture(scope="module")
def actions():
    return np.random.default_rng(0).integers(0, 5, (STEPS, 24)).astype(np.int32)


def _record(benchmark, key: str, per_median_second) -> None:
    """Store `per_median_second(median seconds)` under `key`, when there is a median: with
    --benchmark-disable the function runs once untimed and `benchmark.stats` is None."""
    if benchmark.stats is not None:
        benchmark.extra_info[key] = per_median_second(benchmark.stats.stats.median)


def _steps(env, actions):
    for a in actions:
        if env.done:
            env.reset()
        env.step(a)


def test_env_step(benchmark, actions):
    env = ArenaEnv(preset("basic_easy_shaped"), seed=0)
    env.reset(seed=0)
    _steps(env, actions[:2])
    benchmark(_steps, env, actions)
    _record(benchmark, "agent_steps_per_s", lambda median: STEPS * 24 / median)


ACCESSES = 10_000


def _access(w):
    for _ in range(ACCESSES // 4):
        w.done  # noqa: B018 - the attribute access is what is timed
        w.num_agents  # noqa: B018
        w.emulated  # noqa: B018
        w.single_action_space  # noqa: B018


@pytest.mark.parametrize("dispatch", ["getattribute", "getattr", "none"])
def test_wrapper_attribute_access(benchmark, dispatch):
    env = ArenaEnv(preset("basic_easy_shaped"), seed=0)
    w = wrap(env, dispatch, "per-episode", make_curriculum("single", env.cfg))
    benchmark(_access, w)
    _record(benchmark, "ns_per_access", lambda median: 1e9 * median / ACCESSES)


@pytest.mark.parametrize("dispatch", ["getattribute", "getattr", "none"])
def test_wrapped_env_step(benchmark, actions, dispatch):
    env = ArenaEnv(preset("basic_easy_shaped"), seed=0)
    w = wrap(env, dispatch, "per-episode", make_curriculum("single", env.cfg))
    w.reset(seed=0)
    _steps(w, actions[:2])
    benchmark(_steps, w, actions)
    _record(benchmark, "agent_steps_per_s", lambda median: STEPS * 24 / median)
