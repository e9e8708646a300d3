"""`perfkit diagnose`: answers to the investigation's "questions to verify", without training.

Each check returns data plus a verdict: ok, FAIL, or n/a. Nothing here renders text.
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np

from envs.arena.config import CHANNELS, PRESETS, ArenaConfig, preset
from envs.arena.env import DESYNC_MODES, ArenaEnv
from envs.arena.scripted import scripted_episode_stats
from envs.curriculum import CONFIG_TIMINGS, DISPATCH_STYLES
from envs.registry import make_creator
from perfkit.core.scenario import Scenario
from perfkit.records.diagnose import FAIL, NA, OK, CheckOutcome


def earliest_heart_step(cfg: ArenaConfig) -> int:
    """First step at which one agent standing next to one mine, one generator and one altar can
    hold a heart, from the cooldowns and the altar's battery cost (tests/test_arena.py pins 90 and
    192 for the 1- and 3-battery altars by running exactly that).

    Empty buildings: the mine's k-th ore is taken at (mine+1)*k (it restarts when emptied), the last
    one goes into the generator one step later, the battery is taken generator+1 steps after that,
    put in the altar next step and the heart taken altar+1 steps later. Buildings that start with
    output hold a heart at step 1.
    """
    if cfg.initial_resource_count > 0:
        return 1
    mine, gen, altar = cfg.cooldowns["mine"], cfg.cooldowns["generator"], cfg.cooldowns["altar"]
    if gen + 2 > mine + 1:
        raise ValueError("formula assumes the generator cycle fits in the mine cycle")
    return (mine + 1) * cfg.altar_batteries + gen + altar + 4


def truncated_before(limit_mode: str, earliest: int, max_steps: int) -> float:
    """Probability that a first episode ends before step `earliest` under a desync mode."""
    if limit_mode == "off":
        return 0.0 if earliest <= max_steps else 1.0
    if limit_mode == "max-steps":  # limit ~ U[1, max_steps]: the episode has `limit` steps
        return min(1.0, (earliest - 1) / max_steps)
    return min(1.0, (earliest - 1) / (max_steps - 1))  # early-reset: U[1, max_steps)


def check_config(scenario: Scenario) -> CheckOutcome:
    """Is the recipe actually being used? Build the env exactly as a trial does and read its config back."""
    values = dict(scenario.values)
    env = make_creator(values)(seed=scenario.seed)
    running = env.get_env_config()
    expected = preset(values["preset"])
    data = {"preset": values["preset"], "hash": running.config_hash(), "expected_hash": expected.config_hash(),
            "config": running.to_dict()}
    same = running.config_hash() == expected.config_hash()
    detail = (f"{values['preset']}: altar needs {running.altar_batteries} battery(ies); objects "
              f"{running.objects}; rewards {sorted(running.rewards)}; hash {running.config_hash()}")
    return CheckOutcome("resolved config", OK if same else FAIL,
                        detail if same else f"running config {running.config_hash()} is not the preset's "
                                            f"{expected.config_hash()}: {detail}", data)


def check_reachability(scenario: Scenario, max_unreachable: float, samples: int = 2000) -> CheckOutcome:
    values = dict(scenario.values)
    cfg = preset(values["preset"])
    earliest = earliest_heart_step(cfg)
    rows = {}
    for mode in DESYNC_MODES:
        analytic = truncated_before(mode, earliest, cfg.max_steps)
        limits = np.array([ArenaEnv(cfg, seed=s, desync=mode).first_episode_limit for s in range(samples)])
        rows[mode] = {"analytic": analytic, "measured": float((limits < earliest).mean())}
    frac = rows[values["desync"]]["analytic"]
    verdict = OK if frac <= max_unreachable else FAIL
    detail = (f"earliest heart at step {earliest}; with desync={values['desync']} {100 * frac:.1f}% of first "
              f"episodes end before it (limit {100 * max_unreachable:.0f}%)")
    return CheckOutcome("heart reachable in first episodes", verdict, detail,
                        {"earliest_heart_step": earliest, "by_desync_mode": rows})


def _draw(q, cfg_dict, seed, desync, rng):
    q.put(ArenaEnv(ArenaConfig.from_dict(cfg_dict), seed=seed, desync=desync, desync_rng=rng).first_episode_limit)


def check_shared_rng(scenario: Scenario, workers: int = 4) -> CheckOutcome:
    """Fork `workers` processes after seeding the global RNG once (what a trainer does), have each
    build an env with its own seed, and compare their first-episode truncation steps."""
    values = dict(scenario.values)
    if values["desync"] == "off":
        return CheckOutcome("desync draws differ across workers", NA, "desync=off: no draw")
    cfg = preset(values["preset"]).to_dict()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    np.random.seed(scenario.seed)
    procs = [ctx.Process(target=_draw, args=(q, cfg, scenario.seed + i, values["desync"], values["desync-rng"]))
             for i in range(workers)]
    for p in procs:
        p.start()
    draws = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    same = len(set(draws)) == 1
    detail = (f"desync-rng={values['desync-rng']}: {workers} workers drew {sorted(draws)}"
              + (" — all the same step: every env truncates in lock-step (forked workers share the global RNG)"
                 if same else ""))
    return CheckOutcome("desync draws differ across workers", FAIL if same else OK, detail, {"draws": draws})


def _random_episode(cfg: ArenaConfig, seed: int) -> dict:
    env = ArenaEnv(cfg, seed=seed)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    while True:
        _, _, _, _, infos = env.step(rng.integers(0, 5, env.num_agents).astype(np.int32))
        if infos:
            return infos[0]


def check_scripted(scenario: Scenario, seeds: int = 2) -> CheckOutcome:
    """Hearts per agent per episode for a random and a greedy scripted policy on every preset."""
    rows = {}
    for name in PRESETS:
        cfg = preset(name)
        greedy = [scripted_episode_stats(ArenaEnv(cfg, seed=s), s) for s in range(seeds)]
        rand = [_random_episode(cfg, s) for s in range(seeds)]
        rows[name] = {
            "greedy_hearts": float(np.mean([e["heart.get"] for e in greedy])),
            "greedy_return": float(np.mean([e["episode_return"] for e in greedy])),
            "random_hearts": float(np.mean([e["heart.get"] for e in rand])),
            "random_return": float(np.mean([e["episode_return"] for e in rand])),
        }
    mine = rows[dict(scenario.values)["preset"]]
    verdict = OK if mine["greedy_hearts"] > 0 else FAIL
    detail = (f"{dict(scenario.values)['preset']}: greedy {mine['greedy_hearts']:.2f} hearts/agent/episode, "
              f"random {mine['random_hearts']:.2f}")
    return CheckOutcome("scripted policy gets hearts", verdict, detail, rows)


EXPECTED_MAX = {name: (2 if name == "agent" else 255 if name == "self" else 1) for name in CHANNELS}


def _observations(values: dict, steps: int, seed: int) -> np.ndarray:
    np.random.seed(seed)  # desync-rng=shared draws from the global RNG: same state for every variant
    env = make_creator(values)(seed=seed)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames = [obs.copy()]
    for _ in range(steps):
        if env.done:
            obs, _ = env.reset()
        obs, *_ = env.step(rng.integers(0, 5, env.num_agents).astype(np.int32))
        frames.append(obs.copy())
    return np.stack(frames)


def check_observations(scenario: Scenario, steps: int = 300) -> CheckOutcome:
    """Per-channel ranges, and byte-identical observations across every dispatch style and config
    timing for the scenario's seed (they must not change what the agent sees)."""
    values = dict(scenario.values)
    ref = _observations(values, steps, scenario.seed)
    ranges = {name: [int(ref[:, :, c].min()), int(ref[:, :, c].max())] for c, name in enumerate(CHANNELS)}
    bad = [n for n, (lo, hi) in ranges.items() if lo < 0 or hi > EXPECTED_MAX[n]]
    differ = []
    # Without a wrapper there is no curriculum: comparable only when the curriculum is one task.
    styles = [d for d in DISPATCH_STYLES if d != "none" or values["curriculum"] == "single"]
    for dispatch in styles:
        for timing in CONFIG_TIMINGS:
            obs = _observations({**values, "wrapper": dispatch, "env-config": timing}, steps, scenario.seed)
            if not np.array_equal(obs, ref):
                differ.append(f"wrapper={dispatch},env-config={timing}")
    verdict = OK if not bad and not differ else FAIL
    parts = [f"{len(styles) * len(CONFIG_TIMINGS)} dispatch x timing variants byte-identical over {steps} steps"
             if not differ else f"observations differ for {', '.join(differ)}"]
    if bad:
        parts.append(f"channels out of range: {', '.join(bad)}")
    return CheckOutcome("observations", verdict, "; ".join(parts), {"channel_ranges": ranges, "differ": differ})


def diagnose(scenario: Scenario, max_unreachable: float = 0.10, on_check=None) -> list[CheckOutcome]:
    checks = [
        lambda: check_config(scenario),
        lambda: check_reachability(scenario, max_unreachable),
        lambda: check_shared_rng(scenario),
        lambda: check_scripted(scenario),
        lambda: check_observations(scenario),
    ]
    out = []
    for f in checks:
        out.append(f())
        if on_check is not None:
            on_check(out[-1])
    return out

