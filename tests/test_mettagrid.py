"""The adapter to the real `mettagrid` env (an optional extra; `.[test]` installs it)."""

import numpy as np
import pufferlib.vector as pv
import pytest
from click.testing import CliRunner

from envs import mettagrid as mgmod
from envs.arena import preset
from envs.curriculum import make_curriculum, wrap

needs_mettagrid = pytest.mark.skipif(not mgmod.available(),
                                     reason="mettagrid not installed: pip install 'perfkit[mettagrid]'")


def _env(name="basic_easy_shaped", max_steps=150, **kw):
    return mgmod.make_mettagrid_env(preset(name).replace(max_steps=max_steps), seed=3, **kw)


def _run(env, steps, seed=0):
    env.reset(3)
    rng = np.random.default_rng(seed)
    infos = []
    for _ in range(steps):
        *_, info = env.step(rng.integers(0, 5, env.num_agents).astype(np.int32))
        infos.extend(info)
    return infos


@needs_mettagrid
@pytest.mark.parametrize("name", ["basic_easy_shaped", "make_arena", "fixed_recipe"])
def test_every_preset_builds_and_reports_episodes_under_perfkit_names(name):
    infos = _run(_env(name), 310)
    assert len(infos) == 2 and isinstance(infos[0], dict)
    assert infos[0]["episode_length"] == 150.0
    assert {"heart.get", "ore_red.get", "battery_red.get", "episode_return", "unique_cells"} <= set(infos[0])


@needs_mettagrid
def test_the_resource_chain_runs_on_the_real_core():
    env = _env(max_steps=400)
    infos = _run(env, 400)
    assert infos[0]["ore_red.get"] > 0 and infos[0]["battery_red.get"] > 0  # mines and generators work
    stats = env._env.current_simulation.episode_stats
    assert stats["game"]["objects.mine"] == 10.0 and stats["game"]["objects.altar"] == 5.0


@pytest.mark.slow
@needs_mettagrid
def test_dispatch_styles_give_identical_trajectories():
    def creator(dispatch):
        def make(buf=None, seed=0):
            env = mgmod.make_mettagrid_env(preset("basic_easy_shaped").replace(max_steps=60), buf=buf, seed=seed)
            return wrap(env, dispatch, "per-episode", make_curriculum("single", env.cfg, seed))
        return make

    runs = []
    for dispatch in ("getattribute", "getattr", "none"):
        vec = pv.make(creator(dispatch), backend=pv.Serial, num_envs=2, seed=5)
        vec.async_reset(5)
        rng = np.random.default_rng(0)
        frames = [vec.recv()[0].copy()]
        for _ in range(130):
            vec.send(rng.integers(0, 5, vec.num_agents).astype(np.int32))
            frames.append(vec.recv()[0].copy())
        runs.append(np.array(frames))
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])


@needs_mettagrid
def test_desync_truncates_the_first_episode_at_the_drawn_step():
    env = _env(max_steps=120, desync="early-reset")
    infos = _run(env, 250)
    drawn = infos[0]["episode_length"]
    assert 1 <= drawn < 120 and infos[0]["truncated"] == 1.0
    assert infos[1]["episode_length"] == 120.0  # only the first episode is shortened


@needs_mettagrid
def test_config_timing_goes_through_set_mg_config():
    env = _env(max_steps=30)
    w = wrap(env, "getattr", "per-episode", make_curriculum("single", env.cfg))
    before = env.config_builds
    _run(w, 65)
    assert env.config_builds == before + 2  # one per finished episode


def test_cli_says_how_to_install_when_missing(monkeypatch):
    from perfkit.cli.main import main

    monkeypatch.setattr(mgmod, "available", lambda: False)
    r = CliRunner().invoke(main, ["run", "--env", "mettagrid", "--steps", "100"])
    assert r.exit_code == 2 and "pip install 'perfkit[mettagrid]'" in r.output
