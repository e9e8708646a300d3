"""A user's env for trainers perfkit did not write: Gymnasium's CartPole behind a wrapper with a
hidden per-step cost, switched on by an environment variable.

An unmodified trainer picks it up through Gymnasium's `module:EnvId` form, e.g. CleanRL's

    PYTHONPATH=bench/userenvs python ppo.py --env-id audited_cartpole:AuditedCartPole-v1

`HIDDEN_COST_US` (default 0) is the cost in microseconds per env step, burnt in
`_audit_observation`: the function `perfkit explain` should name.
"""

from __future__ import annotations

import os
import time

import gymnasium as gym

ENV_ID = "AuditedCartPole-v1"


def _cost_us() -> float:
    try:
        return max(0.0, float(os.environ.get("HIDDEN_COST_US", "0") or 0))
    except ValueError:
        return 0.0


def _audit_observation(seconds: float) -> None:
    """The hidden cost: a check of every observation that takes `seconds` of CPU."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class AuditWrapper(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self._cost_s = _cost_us() * 1e-6

    def step(self, action):
        out = self.env.step(action)
        if self._cost_s:
            _audit_observation(self._cost_s)
        return out


def make(**kwargs):
    return AuditWrapper(gym.make("CartPole-v1", **kwargs))


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=make)
