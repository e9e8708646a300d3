import multiprocessing as mp

import numpy as np
import pufferlib
import pytest

from envs.arena import ArenaEnv, preset
from envs.arena.config import CHANNELS, ITEMS, PRESETS, ArenaConfig, Reward
from tests.conftest import chain_map

UP, DOWN, RIGHT, NOOP = 1, 2, 4, 0


def greedy_chain_action(env: ArenaEnv, need: int) -> int:
    """Scripted agent for the room of `chain_map`: run the resource chain as fast as it allows."""
    inv = env.agent_inventory(0)
    stock = {name: int(env._bstock[env._bidx[r, c]]) for name, (r, c) in
             {"mine": (1, 2), "generator": (2, 3), "altar": (3, 2)}.items()}
    if stock["altar"] or inv["battery_red"] >= need:
        return DOWN
    if stock["generator"] or inv["ore_red"]:
        return RIGHT
    if stock["mine"]:
        return UP
    return NOOP


def first_heart_step(env: ArenaEnv, need: int, limit: int = 400) -> int:
    grid, agents = chain_map()
    env.place(grid, agents)
    for t in range(1, limit + 1):
        env.step(np.array([greedy_chain_action(env, need)], dtype=np.int32))
        if env.agent_inventory(0)["heart"]:
            return t
    raise AssertionError("no heart")


def test_resource_chain_one_battery_altar(tiny_chain_cfg):
    # mine ready after tick 50 -> take ore at step 51, put it in the generator at 52, battery ready
    # after 25 ticks (tick 77) -> take at 78, put in the altar at 79, heart after 10 ticks (89) ->
    # taken at step 90: 50 + 25 + 10 cooldown ticks + 5 actions.
    env = ArenaEnv(tiny_chain_cfg(1), seed=0)
    assert first_heart_step(env, 1) == 90


def test_resource_chain_three_battery_altar(tiny_chain_cfg):
    # The mine restarts when its ore is taken (ticks 51, 102): ores at steps 51, 102, 153; the third
    # battery is ready at tick 179, taken at 180, three batteries go in at 181, heart taken at 192.
    env = ArenaEnv(tiny_chain_cfg(3), seed=0)
    assert first_heart_step(env, 3) == 192


def test_buildings_that_start_full_give_output_at_once(tiny_chain_cfg):
    env = ArenaEnv(tiny_chain_cfg(1, initial=1), seed=0)
    grid, agents = chain_map()
    env.place(grid, agents)
    env.step(np.array([DOWN], dtype=np.int32))  # the altar already holds a heart
    assert env.agent_inventory(0)["heart"] == 1


def test_rewards_follow_the_item_map_and_caps(tiny_chain_cfg):
    cfg = tiny_chain_cfg(1).replace(rewards={"ore_red": Reward(0.6, 1.0), "heart": Reward(1.0)},
                                    initial_resource_count=1, cooldowns={"mine": 1, "generator": 25, "altar": 10,
                                                                         "lasery": 10, "armory": 10})
    env = ArenaEnv(cfg, seed=0)
    grid, agents = chain_map()
    env.place(grid, agents)
    got = []
    for _ in range(4):  # ore every other step (cooldown 1 after the take)
        env.step(np.array([UP], dtype=np.int32))
        got.append(float(env.rewards[0]))
    assert got == pytest.approx([0.6, 0.0, 0.4, 0.0])  # second ore is capped at 1.0 total


def test_presets_match_facts_table():
    old, new, fixed = preset("basic_easy_shaped"), preset("make_arena"), preset("fixed_recipe")
    for cfg in (old, new, fixed):
        assert (cfg.num_agents, cfg.width, cfg.height, cfg.obs_size, cfg.max_steps) == (24, 25, 25, 11, 1000)
    assert old.objects == {"mine": 10, "generator": 5, "altar": 5, "block": 20, "wall": 20}
    assert new.objects == {"mine": 10, "generator": 5, "altar": 5, "block": 0, "wall": 10, "lasery": 1, "armory": 1}
    assert fixed.objects == old.objects
    assert (old.altar_batteries, new.altar_batteries, fixed.altar_batteries) == (1, 3, 1)
    assert set(new.rewards) == {"heart"}
    assert old.rewards["ore_red"] == Reward(0.1, 1.0) and old.rewards["battery_red"] == Reward(0.8, 1.0)
    assert fixed.rewards["heart"] == Reward(1.0, 255.0)
    assert (old.initial_resource_count, new.initial_resource_count, fixed.initial_resource_count) == (0, 0, 1)
    assert (new.combat, new.laser_cost) == (True, 1) and (fixed.combat, fixed.laser_cost) == (False, 100)
    assert len({p().config_hash() for p in PRESETS.values()}) == 3


def test_observation_space_and_channels():
    env = ArenaEnv(preset("basic_easy_shaped"), seed=3)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (24, len(CHANNELS), 11, 11) and obs.dtype == np.uint8
    assert isinstance(env, pufferlib.PufferEnv)
    # every agent sees itself at the centre of its window
    assert (obs[:, CHANNELS.index("agent"), 5, 5] == 1).all()
    # the map has 20 blocks and 20 walls plus a border of walls
    assert (env._grid == 2).sum() == 20


def _rollout(seed: int, steps: int = 300):
    env = ArenaEnv(preset("basic_easy_shaped").replace(max_steps=120), seed=seed)
    env.reset(seed=seed)
    rng = np.random.default_rng(0)
    obs, rews, infos = [], [], []
    for _ in range(steps):
        if env.done:
            env.reset()
        o, r, _, _, i = env.step(rng.integers(0, 5, 24).astype(np.int32))
        obs.append(o.copy())
        rews.append(r.copy())
        infos.extend(i)
    return np.array(obs), np.array(rews), infos


def test_deterministic_for_a_seed():
    a, b, c = _rollout(7), _rollout(7), _rollout(8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])


def test_episode_end_reports_stats_and_done():
    _, _, infos = _rollout(1, steps=250)
    assert len(infos) == 2
    info = infos[0]
    assert info["episode_length"] == 120.0
    for item in ITEMS:
        assert f"{item}.get" in info
    assert {"episode_return", "unique_cells", "truncated"} <= set(info)


def test_set_env_config_rebuilds_builder_and_rejects_new_shapes():
    env = ArenaEnv(preset("basic_easy_shaped"), seed=0)
    before = env.map_builder
    env.set_env_config(preset("make_arena"))
    assert env.map_builder is not before and env.cfg.name == "make_arena"
    env.reset()
    assert (env._grid == 6).sum() == 1  # one lasery on the new map
    with pytest.raises(ValueError, match="num_agents/obs_size"):
        env.set_env_config(preset("make_arena").replace(num_agents=12))


@pytest.mark.parametrize("mode,low,high", [("max-steps", 1, 1000), ("early-reset", 1, 999)])
def test_desync_draw_ranges(mode, low, high):
    limits = [ArenaEnv(preset("basic_easy_shaped"), seed=s, desync=mode).first_episode_limit for s in range(300)]
    assert low <= min(limits) and max(limits) <= high
    assert len(set(limits)) > 200  # per-env RNG: envs draw different steps


def test_desync_off_keeps_full_first_episode():
    assert ArenaEnv(preset("basic_easy_shaped"), seed=5).first_episode_limit == 1000


def _draw_in_child(q, seed):
    env = ArenaEnv(preset("basic_easy_shaped"), seed=seed, desync="early-reset", desync_rng="shared")
    q.put(env.first_episode_limit)


def test_shared_rng_gives_identical_draws_in_forked_workers():
    np.random.seed(1234)  # the parent's global state, inherited by each forked worker
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_draw_in_child, args=(q, seed)) for seed in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    draws = [q.get(timeout=5) for _ in procs]
    assert len(set(draws)) == 1  # the bug: every worker truncates at the same step


def test_invalid_config_names_the_bad_value():
    with pytest.raises(ValueError, match="unknown object 'tower'"):
        ArenaConfig(objects={"tower": 1})
    with pytest.raises(ValueError, match="desync 'sometimes' invalid; valid: off, max-steps, early-reset"):
        ArenaEnv(desync="sometimes")


def test_config_round_trips_through_dict():
    cfg = preset("fixed_recipe")
    assert ArenaConfig.from_dict(cfg.to_dict()) == cfg
