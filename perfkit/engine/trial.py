"""Run ONE scenario for a budget and return a `TrialResult`.

`python -m perfkit.engine.trial SPEC.json OUT.json` is the entry point every trial uses, profiled or
not, so a profiler's overhead is measured against the same code path. SPEC.json holds the
scenario, the budget and the PPO config; OUT.json is written atomically when the trial ends:
also on Ctrl-C or SIGTERM (`interrupted: true`, exit 130) and when the env or the update raises
(`error` set, exit 1), in both cases with every window measured before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from perfkit.core.machine import machine_info
from perfkit.core.scenario import Scenario, ScenarioError
from perfkit.core.timing import Window, steady_state
from perfkit.records.trial import WARMUP_WINDOWS, TrialResult

NUM_ENVS = 4  # arenas per trial: 4 x 24 = 96 agents, as in the reference trainer (docs/background.md)


def resolve_device(spec: str):
    import torch

    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ScenarioError("device=cuda requested but torch.cuda.is_available() is False; valid here: auto, cpu")
    return torch.device("cuda")


def apply_thread_policy(values: dict[str, str], workers: int = 0, cores: int | None = None) -> dict:
    """Set torch's intra-op (and inter-op) threads from the `threads` axis; returns what was set and
    why, for the trial's record. `auto` never oversubscribes the cores this process may use, or
    `cores` of them when it shares the machine with other trials (seeds trained side by side)."""
    import torch

    from perfkit.core.threads import apply_threads, available_cores, choose_threads

    spec = values.get("threads", "auto")
    cores = min(cores, available_cores()) if cores else available_cores()
    device = values.get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "auto":
        n, reason = choose_threads(cores, workers, device)
    else:
        n, reason = int(spec), "set by threads axis"
    return {"requested": spec, "intra_op": n, "cores": cores, "reason": reason, **apply_threads(n).to_dict()}


def run_trial(
    scenario: Scenario,
    seconds: float | None = None,
    steps: int | None = None,
    out_dir: str | None = None,
    ppo: dict | None = None,
    num_envs: int = NUM_ENVS,
    on_window=None,
    torch_profile=None,
    checkpoint_dir: str | None = None,
    cores: int | None = None,
) -> TrialResult:
    import torch

    from envs.registry import make_creator
    from perfkit.train import vecenv as vec
    from perfkit.train.build import scenario_options
    from perfkit.train.ppo import Budget, PPOConfig, describe_error, train

    values = dict(scenario.values)
    device = resolve_device(values["device"])
    cfg = PPOConfig(**(ppo or {}))
    creator = make_creator(values)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    plan = vec.plan(values["workers"], num_envs, gpus=gpus)
    threads = apply_thread_policy(values, plan.num_workers, cores)
    try:
        vecenv = vec.make(creator, plan, seed=scenario.seed)
    except Exception as e:  # the env could not be built: a failed trial, recorded
        return TrialResult.failed(scenario.to_dict(), scenario.label(), describe_error(e))
    watch = _WindowWatch(on_window)
    session = None
    if torch_profile is not None:
        from perfkit.engine.profilers.torchprof import TorchProfileSession

        session = TorchProfileSession(torch_profile, cuda=device.type == "cuda")
    try:
        driver = vecenv.driver_env
        env_cfg = driver.get_env_config() if hasattr(driver, "get_env_config") else None
        agents_per_env = driver.num_agents
        with session if session is not None else contextlib.nullcontext():
            outcome = train(
                vecenv,
                cfg,
                device,
                Budget(seconds=seconds, agent_steps=steps),
                **scenario_options(values, creator, scenario.seed,
                                   checkpoint_dir or (os.path.join(out_dir, "checkpoints") if out_dir else None)),
                on_window=watch,
                warmup_epochs=WARMUP_WINDOWS,
                profiler=session,
            )
    finally:
        vecenv.close()
    result = trial_result(scenario, outcome, plan, agents_per_env, env_cfg, device, cfg)
    result.threads = threads
    watch.annotate(result)
    if session is not None:
        result.artifacts["torch"] = {"files": session.files, "config": torch_profile.to_dict(),
                                     "profiled_epochs": sorted(torch_profile.profiled_epochs())}
    return result


class _WindowWatch:
    """Called at every window's end: what other processes took of the machine during it (the
    sentinel), then the caller's own callback."""

    def __init__(self, on_window=None):
        from perfkit.core.sentinel import Sentinel

        self.on_window, self.others = on_window, []
        self.sentinel = Sentinel()
        self.sentinel.start()

    def __call__(self, w) -> None:
        u = self.sentinel.mark()
        self.others.append(u.others_cores if u is not None else None)
        if self.on_window is not None:
            self.on_window(w)

    def annotate(self, result: TrialResult) -> None:
        from perfkit.core.sentinel import disturbed

        total = self.sentinel.total()
        result.sentinel = {**(total.to_dict() if total is not None else {}),
                           "disturbed": disturbed(total) if total is not None else None}
        for w, others in zip(result.windows, self.others, strict=False):
            w["others_cores"] = others


def trial_result(scenario, outcome, plan, agents_per_env, env_cfg, device, cfg, warmup: int = WARMUP_WINDOWS,
                 machine: dict | None = None) -> TrialResult:
    windows: list[Window] = outcome.windows
    sps, secs = steady_state(windows, warmup)
    steady = windows[warmup:] or windows
    phases = {k: sum(w.phases.get(k, 0.0) for w in steady) for k in (windows[0].phases if windows else {})}
    return TrialResult(
        scenario=scenario.to_dict(),
        label=scenario.label(),
        sps=sps,
        first_window_sps=windows[0].sps if windows else 0.0,
        agent_steps=outcome.agent_steps,
        seconds=sum(w.seconds for w in windows),
        epochs=outcome.epochs,
        phases=phases,
        windows=[{**asdict(w), "sps": w.sps} for w in windows],
        learning=_last_learning(windows),
        env_config=env_cfg.to_dict() if env_cfg is not None else None,
        env_config_hash=env_cfg.config_hash() if env_cfg is not None else None,
        vec={**plan.to_dict(), "agents_per_env": agents_per_env, "agents": plan.num_envs * agents_per_env},
        device=str(device),
        ppo=cfg.to_dict(),
        checkpoints=outcome.checkpoints,
        evals=outcome.evals,
        interrupted=outcome.interrupted,
        machine=machine if machine is not None else machine_info(),
        error=outcome.error or (None if windows or outcome.interrupted else
                                "no training epoch finished within the budget: raise --seconds, or lower "
                                "--ppo num_steps (a stalled or very slow env, or oversubscribed threads)"),
        warmup_windows=warmup,
    )


def _last_learning(windows: list[Window], last: int = 5) -> dict[str, float]:
    """Episode stats averaged over the last windows that finished episodes, plus training stats
    of the last window: the 'where did learning get to' summary."""
    from perfkit.core.stats import mean_learning

    with_eps = [w.learning for w in windows if w.learning.get("episodes")][-last:]
    out: dict[str, float] = {}
    if with_eps:
        out = mean_learning(with_eps)
        out["episodes"] = sum(d.get("episodes", 0.0) for d in with_eps)
    if windows:
        for k in ("entropy", "approx_kl", "clipfrac", "pg_loss", "v_loss"):
            if k in windows[-1].learning:
                out[k] = windows[-1].learning[k]
    return out


def stop_once(signum, frame) -> None:
    """First SIGINT/SIGTERM: stop training (KeyboardInterrupt). Later ones are ignored, so a Ctrl-C
    that reaches this process twice (from the terminal and forwarded by the parent) cannot
    interrupt the saving of what was measured."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def child_args(module: str, argv: list[str] | None) -> tuple[Path, Path]:
    """(SPEC.json, OUT.json) for a measuring child process (`python -m perfkit.engine.trial` or
    `perfkit.engine.session`), with the stop-once signal handlers installed; exit 2 on bad usage."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(f"usage: python -m {module} SPEC.json OUT.json", file=sys.stderr)
        raise SystemExit(2)
    signal.signal(signal.SIGINT, stop_once)
    signal.signal(signal.SIGTERM, stop_once)
    return Path(argv[0]), Path(argv[1])


def main(argv: list[str] | None = None) -> int:
    spec_path, out = child_args("perfkit.engine.trial", argv)
    spec = json.loads(spec_path.read_text())
    scenario = Scenario.from_dict(spec["scenario"])
    torch_profile = None
    if spec.get("torch_profiler"):
        from perfkit.engine.profilers.torchprof import TorchProfileConfig

        torch_profile = TorchProfileConfig(**spec["torch_profiler"])
    result = run_trial(
        scenario,
        seconds=spec.get("seconds"),
        steps=spec.get("steps"),
        out_dir=str(out.parent),
        checkpoint_dir=str(out.with_suffix("")) + "-checkpoints",  # one per trial: none shares latest.pt
        ppo=spec.get("ppo"),
        num_envs=spec.get("num_envs", NUM_ENVS),
        torch_profile=torch_profile,
        cores=spec.get("cores"),
    )
    result.save(out)
    if result.error:
        print(f"trial failed: {result.error}", file=sys.stderr)
        return 1
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
