"""A user's env module for `perfkit learn`: Gymnasium's CartPole behind pufferlib's Gymnasium
adapter, reporting each episode's return and length in its infos, as a user would write it.

`make_stale` carries a learning bug that costs no speed: a frame-buffer wrapper hands the agent the
observation from the step before (every observation one step late), the kind of off-by-one a
refactor of an observation pipeline introduces. `make_twin` is `make` under another name.

    PYTHONPATH=bench/userenvs perfkit learn --vary env=cartpole_stale:make,cartpole_stale:make_stale
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pufferlib.emulation


class EpisodeStats(gym.Wrapper):
    """Adds episode_return and episode_length to the info of an episode's last step."""

    def reset(self, **kwargs):
        self._ret, self._len = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self._ret += float(reward)
        self._len += 1
        if term or trunc:
            info = {**info, "episode_return": self._ret, "episode_length": self._len}
        return obs, reward, term, trunc, info


class LateFrames(gym.Wrapper):
    """The bug: returns the previous step's observation (the buffer is swapped after it is read)."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last = np.array(obs, copy=True)
        return obs, info

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        late, self._last = self._last, np.array(obs, copy=True)
        return late, reward, term, trunc, info


def _cartpole(stale: bool):
    env = gym.make("CartPole-v1")
    return EpisodeStats(LateFrames(env) if stale else env)


def make(buf=None, seed=0):
    return pufferlib.emulation.GymnasiumPufferEnv(env_creator=_cartpole, env_args=[False], buf=buf, seed=seed)


def make_twin(buf=None, seed=0):
    return pufferlib.emulation.GymnasiumPufferEnv(env_creator=_cartpole, env_args=[False], buf=buf, seed=seed)


def make_stale(buf=None, seed=0):
    return pufferlib.emulation.GymnasiumPufferEnv(env_creator=_cartpole, env_args=[True], buf=buf, seed=seed)
