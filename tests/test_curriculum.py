import numpy as np
import pufferlib
import pufferlib.vector as pv
import pytest

from envs.arena import ArenaEnv, preset
from envs.curriculum import (
    GetattrCurriculumEnv,
    GetattributeCurriculumEnv,
    make_curriculum,
    wrap,
)


def _creator(dispatch, timing, curriculum="single", max_steps=60):
    def creator(buf=None, seed=0):
        env = ArenaEnv(preset("basic_easy_shaped").replace(max_steps=max_steps), buf=buf, seed=seed)
        return wrap(env, dispatch, timing, make_curriculum(curriculum, env.cfg, seed))

    return creator


def _trajectory(dispatch, timing, curriculum="single", steps=200):
    vec = pv.make(_creator(dispatch, timing, curriculum), backend=pv.Serial, num_envs=2, seed=3)
    vec.async_reset(3)
    obs = vec.recv()[0]
    rng = np.random.default_rng(0)
    out_obs, out_rew, out_infos = [obs.copy()], [], []
    for _ in range(steps):
        vec.send(rng.integers(0, 5, vec.num_agents).astype(np.int32))
        o, r, _, _, _, infos, _, _ = vec.recv()
        out_obs.append(o.copy())
        out_rew.append(r.copy())
        out_infos.extend({k: v for k, v in i.items() if not k.startswith("curriculum.")} for i in infos)
    return np.array(out_obs), np.array(out_rew), out_infos


@pytest.mark.parametrize("timing", ["per-episode", "deferred"])
def test_every_dispatch_style_gives_identical_trajectories(timing):
    ref = _trajectory("none", timing)
    for dispatch in ("getattribute", "getattr"):
        obs, rew, infos = _trajectory(dispatch, timing)
        assert np.array_equal(obs, ref[0]) and np.array_equal(rew, ref[1])
        assert infos == ref[2] and len(infos) == 6


def test_timings_agree_on_a_multi_task_curriculum():
    per_episode = _trajectory("getattr", "per-episode", "mixed")
    deferred = _trajectory("getattr", "deferred", "mixed")
    faithful = _trajectory("getattribute", "per-episode", "mixed")
    for a, b in ((per_episode, deferred), (per_episode, faithful)):
        assert np.array_equal(a[0], b[0]) and a[2] == b[2]


def test_getattribute_with_deferred_never_applies_the_pending_config():
    """The wrapper's quirk (reset is not on the allow-list) meets the deferred timing."""
    env = ArenaEnv(preset("basic_easy_shaped").replace(max_steps=5), seed=0)
    tasks = make_curriculum("mixed", env.cfg, seed=0)
    w = GetattributeCurriculumEnv(env, tasks, "deferred")
    w.reset()
    for _ in range(30):
        if w.done:
            w.reset()
        w.step(np.zeros(24, dtype=np.int32))
    assert w.tasks_completed == 6 and w.configs_applied == 0


def test_per_episode_applies_config_inside_step_at_episode_end():
    env = ArenaEnv(preset("basic_easy_shaped").replace(max_steps=3), seed=0)
    w = GetattrCurriculumEnv(env, make_curriculum("single", env.cfg), "per-episode")
    w.reset()
    builds = env.config_builds
    for _ in range(2):
        w.step(np.zeros(24, dtype=np.int32))
    assert env.config_builds == builds  # mid-episode: untouched
    w.step(np.zeros(24, dtype=np.int32))  # the step that ends the episode applies the next config
    assert env.config_builds == builds + 1 and w.done and env.resets == 1


def test_deferred_applies_config_at_reset():
    env = ArenaEnv(preset("basic_easy_shaped").replace(max_steps=3), seed=0)
    w = GetattrCurriculumEnv(env, make_curriculum("single", env.cfg), "deferred")
    w.reset()
    builds = env.config_builds
    for _ in range(3):
        w.step(np.zeros(24, dtype=np.int32))
    assert env.config_builds == builds and w.done  # episode over, config still pending
    w.reset()
    assert env.config_builds == builds + 1 and w.configs_applied == 1


def test_getattribute_forwards_everything_but_its_allow_list():
    env = ArenaEnv(preset("basic_easy_shaped"), seed=0)
    w = GetattributeCurriculumEnv(env, make_curriculum("single", env.cfg))
    assert isinstance(w, pufferlib.PufferEnv)
    assert w.num_agents == 24 and w.cfg is env.cfg  # forwarded
    assert w.tasks_completed == 0  # own field
    w.only_on_wrapper = 5  # not on the inner env -> AttributeError -> falls back to the wrapper
    assert w.only_on_wrapper == 5
    assert w.reset == env.reset  # the quirk: reset resolves on the inner env


def test_getattr_overrides_the_names_the_base_class_defines():
    env = ArenaEnv(preset("basic_easy_shaped"), seed=0)
    w = GetattrCurriculumEnv(env, make_curriculum("single", env.cfg))
    env._done = True
    assert w.done is True  # PufferEnv.done would say False without the override
    assert w.driver_env is env and w.emulated is False
    assert w.episode_stats is not None  # plain forwarding through __getattr__


def test_unknown_names_are_rejected():
    env = ArenaEnv(preset("basic_easy_shaped"), seed=0)
    with pytest.raises(ValueError, match="dispatch 'proxy' invalid; valid: getattribute, getattr, none"):
        wrap(env, "proxy")
    with pytest.raises(ValueError, match="unknown curriculum 'hard'"):
        make_curriculum("hard", env.cfg)
