"""PPO, CleanRL-style: one loop that reads top to bottom, with perfkit's phase timers at its edges.

Phases: `copy` (host<->device and buffer writes), `forward` (rollout inference), `env` (vector env
send/recv), `learn` (GAE + minibatch updates), `checkpoint`, `eval`, `misc` (the rest). Each epoch
(one rollout of `num_steps` plus one update) is one SPS window.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from perfkit.core.markers import call_marked, marker_name
from perfkit.core.timing import PhaseTimer, Window, WindowedSPS
from perfkit.train.cadence import Cadence
from perfkit.train.config import PPOConfig, PPOConfigError  # noqa: F401 -- re-exported


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Policy(nn.Module):
    """2-layer MLP over the flattened uint8 observation, with actor and critic heads."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, hidden: int = 128, obs_scale: float = 1.0):
        super().__init__()
        n_in = int(np.prod(obs_shape))
        self.obs_scale = obs_scale  # token observations (0..255) need scaling; the arena's planes do not
        self.encoder = nn.Sequential(
            layer_init(nn.Linear(n_in, hidden)), nn.ReLU(), layer_init(nn.Linear(hidden, hidden)), nn.ReLU()
        )
        self.actor = layer_init(nn.Linear(hidden, num_actions), std=0.01)
        self.critic = layer_init(nn.Linear(hidden, 1), std=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.flatten(1).float()
        h = self.encoder(x if self.obs_scale == 1.0 else x * self.obs_scale)
        return self.actor(h), self.critic(h).squeeze(-1)


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None = None):
    """Gumbel-max sampling: cheaper per step than building a `Categorical`."""
    u = torch.rand(logits.shape, device=logits.device, generator=generator).clamp_(1e-10, 1.0)
    action = (logits - torch.log(-torch.log(u))).argmax(-1)
    logprob = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
    return action, logprob


@dataclass
class Budget:
    seconds: float | None = None
    agent_steps: int | None = None

    def spent(self, agent_steps: int, elapsed: float) -> bool:
        if self.agent_steps is not None and agent_steps >= self.agent_steps:
            return True
        return self.seconds is not None and elapsed >= self.seconds


@dataclass
class TrainOutcome:
    windows: list[Window]
    agent_steps: int
    epochs: int
    checkpoints: int = 0
    evals: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    error: str | None = None  # the exception that ended training early, with its traceback's tail


def mean_infos(infos: list[dict]) -> dict[str, float]:
    """Average each numeric key over the episodes that reported it; counters keep their max."""
    from perfkit.core.stats import mean_learning

    numeric = [{k: float(v) for k, v in info.items() if isinstance(v, (int, float, np.number))} for info in infos]
    out = mean_learning(numeric)
    if infos:
        out["episodes"] = float(len(infos))
    return out


class Trainer:
    """One PPO learner (policy, optimizer, buffers, its own vector env) advanced an epoch at a time.

    `train()` runs one Trainer to a budget; perfkit's in-process runner advances several Trainers
    in turn (one epoch each, rotating), so variants that do not change the process are compared
    block by block on the same machine state. `profiler`, if given, is stepped once per epoch and
    told every phase edge (see perfkit.engine.profilers.torchprof).
    """

    def __init__(
        self,
        vecenv,
        cfg: PPOConfig,
        device: torch.device,
        *,
        seed: int = 1,
        checkpoint: Cadence | None = None,
        evaluate: Cadence | None = None,
        checkpoint_dir: str | None = None,
        make_eval_env: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        profiler=None,
        fault: str = "none",
    ):
        torch.manual_seed(seed)
        if fault == "half-minibatch":
            cfg = dataclasses.replace(cfg, minibatch_size=max(1, cfg.minibatch_size // 2))
        elif fault == "quarter-lr":  # a learning fault that costs no speed (perfkit learn's validation)
            cfg = dataclasses.replace(cfg, learning_rate=cfg.learning_rate / 4)
        # resolved once: the rollout loop tests booleans, not strings, on every step
        self._obs_copy, self._host_sync = fault == "obs-copy", fault == "host-sync"
        np.random.seed(seed)  # the *shared* desync RNG (forked workers inherit it) draws from this global state
        self.vecenv, self.cfg, self.device, self.seed = vecenv, cfg, device, seed
        self.cuda = device.type == "cuda"
        self.clock = clock
        self.profiler = profiler
        self.timer = PhaseTimer(clock, sync=torch.cuda.synchronize if self.cuda else None,
                                on_switch=profiler.phase if profiler is not None else None)
        self.windows = WindowedSPS(self.timer, clock)
        self.checkpoint = checkpoint or Cadence("off")
        self.evaluate = evaluate or Cadence("off")
        self.checkpoint_dir = checkpoint_dir
        self.make_eval_env = make_eval_env
        self.gen = torch.Generator(device=device).manual_seed(seed)

        N = self.num_agents = vecenv.num_agents
        obs_shape = vecenv.single_observation_space.shape
        obs_scale = float(getattr(vecenv.driver_env, "obs_scale", 1.0))
        self.policy = Policy(obs_shape, vecenv.single_action_space.n, cfg.hidden, obs_scale).to(device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.buf = RolloutBuffer.allocate(cfg.num_steps, N, obs_shape, device)
        # On CUDA, observations go host -> device through a pinned staging buffer (an async DMA);
        # the per-step action copy back to the host is the one sync the rollout needs.
        self.staging = torch.empty((N, *obs_shape), dtype=torch.uint8).pin_memory() if self.cuda else None
        self.staging_np = self.staging.numpy() if self.cuda else None

        vecenv.async_reset(seed)
        self.next_obs = vecenv.recv()[0]
        self.next_done = np.zeros(N, dtype=np.float32)
        self.agent_steps, self.epoch, self.checkpoints = 0, 0, 0
        self.evals: list[dict[str, float]] = []
        now = clock()
        self.checkpoint.start(now)
        self.evaluate.start(now)

    def run_epoch(self, deadline: float | None = None) -> Window | None:
        """One rollout of `num_steps` plus one update; returns its SPS window, which covers this
        call alone (set-up, callbacks between epochs and other learners' epochs belong to no
        window). Returns None (and records nothing) if the clock passes `deadline` during the
        rollout: a budget is honoured even when a single step is slow."""
        self.windows.restart()
        timer, buf, cuda = self.timer, self.buf, self.cuda
        policy, vecenv, gen, clock = self.policy, self.vecenv, self.gen, self.clock
        episode_infos: list[dict] = []
        next_obs, next_done = self.next_obs, self.next_done
        for step in range(self.cfg.num_steps):
            if deadline is not None and clock() >= deadline:
                self.next_obs = next_obs
                return None
            timer.switch("copy")
            # Straight into the rollout buffer, which the forward pass then reads: one copy.
            if cuda:
                np.copyto(self.staging_np, next_obs)
                buf.obs[step].copy_(self.staging, non_blocking=True)
            else:
                buf.obs[step].copy_(torch.from_numpy(next_obs))
            if self._obs_copy:
                self._spare = _fault_obs_copy(buf.obs[step])
            buf.dones[step] = next_done
            timer.switch("forward")
            with torch.no_grad():
                logits, value = policy(buf.obs[step])
                action, logprob = sample_actions(logits, gen)
                if self._host_sync:
                    _fault_host_sync(value)
            buf.actions[step] = action
            buf.logprobs[step] = logprob
            buf.values[step] = value
            timer.switch("copy")
            action_np = action.to(torch.int32).cpu().numpy()
            timer.switch("env")
            vecenv.send(action_np)
            next_obs, reward, term, trunc, _, infos, _, _ = vecenv.recv()
            timer.switch("misc")
            buf.rewards[step] = reward
            np.logical_or(term, trunc, out=next_done, casting="unsafe")
            if infos:
                episode_infos.extend(infos)
        self.next_obs = next_obs
        self.agent_steps += self.cfg.num_steps * self.num_agents

        timer.switch("learn")
        stats = _update(self.policy, self.optimizer, self.cfg, buf, next_obs, next_done, self.device, gen)
        self.epoch += 1
        now = clock()
        if self.checkpoint.due(self.epoch, now) and self.checkpoint_dir:
            timer.switch("checkpoint")
            save_checkpoint(self.checkpoint_dir, self.policy, self.optimizer, self.epoch, self.agent_steps)
            self.checkpoints += 1
        if self.evaluate.due(self.epoch, now) and self.make_eval_env is not None:
            timer.switch("eval")
            self.evals.append({"epoch": self.epoch, "agent_steps": self.agent_steps,
                               **run_eval(self.policy, self.make_eval_env, self.cfg.eval_steps, self.device,
                                          self.seed)})
        timer.switch("misc")
        window = self.windows.mark(self.agent_steps, {**mean_infos(episode_infos), **stats})
        if self.profiler is not None:
            self.profiler.step()
        return window

    def continue_from(self, old: Trainer) -> None:
        """Take over `old`'s training: its weights, optimizer state, sampling RNG, counters, windows
        and cadences, in this trainer's own fresh tensors (the env restarts its episodes). What an
        in-process compare does when it rebuilds its trainers in another order mid-run, so that
        where each one's memory landed is not a fixed offset between them (perfkit.engine.session)."""
        self.policy.load_state_dict(old.policy.state_dict())
        self.optimizer.load_state_dict(old.optimizer.state_dict())
        self.gen.set_state(old.gen.get_state())
        self.agent_steps, self.epoch, self.checkpoints = old.agent_steps, old.epoch, old.checkpoints
        self.evals, self.checkpoint, self.evaluate = old.evals, old.checkpoint, old.evaluate
        self.windows.carry(old.windows.windows, self.agent_steps)

    def outcome(self, interrupted: bool = False, error: str | None = None) -> TrainOutcome:
        return TrainOutcome(self.windows.windows, self.agent_steps, self.epoch, self.checkpoints, self.evals,
                            interrupted, error)


def _fault_obs_copy(obs: torch.Tensor) -> torch.Tensor:
    """fault=obs-copy: one more copy of the observation batch per rollout step."""
    return obs.clone()


def _fault_host_sync(value: torch.Tensor) -> float:
    """fault=host-sync: read a result back to the host every rollout step (`.item()`): on CUDA the
    host waits for the device; on a CPU it is only a small extra call."""
    return value.sum().item()


def train(
    vecenv,
    cfg: PPOConfig,
    device: torch.device,
    budget: Budget,
    *,
    on_window: Callable[[Window], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    warmup_epochs: int = 1,
    **trainer_options,
) -> TrainOutcome:
    """Train until `budget` is spent. A time budget is checked at every rollout step, so a slow env
    cannot overrun it by a whole epoch; a step budget counts whole epochs. Ctrl-C, or an exception
    from the env or the update, ends the run and returns every finished window (with the error)."""
    trainer = None
    try:
        trainer = Trainer(vecenv, cfg, device, clock=clock, **trainer_options)
        start = clock()
        deadline = start + budget.seconds if budget.seconds is not None else None
        while not budget.spent(trainer.agent_steps, clock() - start):
            # Each epoch runs under a marker frame (perfkit/core/markers.py) so a profile of this trial
            # can leave out the warm-up epochs that steady-state SPS leaves out.
            k = len(trainer.windows.windows)
            window = call_marked(marker_name("trial", k, warmup=k < warmup_epochs), trainer.run_epoch, deadline)
            if window is None:
                break
            if on_window is not None:
                on_window(window)
    except KeyboardInterrupt:
        if trainer is None:
            return TrainOutcome([], 0, 0, interrupted=True)
        return trainer.outcome(interrupted=True)
    except Exception as e:  # a failed trial is a result: keep what was measured before it
        error = describe_error(e)
        return trainer.outcome(error=error) if trainer is not None else TrainOutcome([], 0, 0, error=error)
    return trainer.outcome()


def describe_error(e: BaseException, lines: int = 8) -> str:
    """`Type: message` plus the innermost traceback lines: enough to find the failing code."""
    import traceback

    tb = traceback.format_exception(type(e), e, e.__traceback__)
    tail = "".join(tb).strip().splitlines()[-lines:]
    return f"{type(e).__name__}: {e}\n" + "\n".join(tail)


@dataclass
class RolloutBuffer:
    """Preallocated (num_steps, num_agents) rollout storage, CleanRL-style. Rewards and dones stay
    in NumPy: the env writes them on the host and the update moves them once per epoch."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: np.ndarray
    dones: np.ndarray  # dones[t]: the episode ended just before step t's observation

    @classmethod
    def allocate(cls, num_steps: int, num_agents: int, obs_shape: tuple[int, ...], device) -> RolloutBuffer:
        T, N = num_steps, num_agents
        return cls(
            obs=torch.zeros((T, N, *obs_shape), dtype=torch.uint8, device=device),
            actions=torch.zeros((T, N), dtype=torch.long, device=device),
            logprobs=torch.zeros((T, N), device=device),
            values=torch.zeros((T, N), device=device),
            rewards=np.zeros((T, N), dtype=np.float32),
            dones=np.zeros((T, N), dtype=np.float32),
        )


def _update(policy, optimizer, cfg: PPOConfig, buf: RolloutBuffer, next_obs, next_done, device,
            gen) -> dict[str, float]:
    T, N = buf.rewards.shape
    values = buf.values
    rewards = torch.from_numpy(buf.rewards).to(device)
    dones = torch.from_numpy(buf.dones).to(device)
    with torch.no_grad():
        _, next_value = policy(torch.from_numpy(next_obs).to(device))
        advantages = torch.zeros_like(rewards)
        lastgaelam = torch.zeros(N, device=device)
        for t in reversed(range(T)):
            if t == T - 1:
                next_nonterminal, next_values = 1.0 - torch.from_numpy(next_done).to(device), next_value
            else:
                next_nonterminal, next_values = 1.0 - dones[t + 1], values[t + 1]
            delta = rewards[t] + cfg.gamma * next_values * next_nonterminal - values[t]
            lastgaelam = delta + cfg.gamma * cfg.gae_lambda * next_nonterminal * lastgaelam
            advantages[t] = lastgaelam
        returns = advantages + values

    B = T * N
    b_obs = buf.obs.reshape(B, -1)
    b_actions, b_logprobs = buf.actions.reshape(B), buf.logprobs.reshape(B)
    b_adv, b_returns = advantages.reshape(B), returns.reshape(B)
    mb = min(cfg.minibatch_size, B)
    sums = torch.zeros(6, device=device)  # pg_loss, v_loss, entropy, approx_kl, clipfrac, count
    for _ in range(cfg.update_epochs):
        perm = torch.randperm(B, device=device, generator=gen)
        for s in range(0, B, mb):
            idx = perm[s : s + mb]
            logits, newvalue = policy(b_obs[idx])
            logp_all = torch.log_softmax(logits, -1)
            newlogprob = logp_all.gather(-1, b_actions[idx].unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            logratio = newlogprob - b_logprobs[idx]
            ratio = logratio.exp()
            adv = b_adv[idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            v_loss = 0.5 * ((newvalue - b_returns[idx]) ** 2).mean()
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfrac = ((ratio - 1.0).abs() > cfg.clip_coef).float().mean()
                sums += torch.stack([pg_loss.detach(), v_loss.detach(), entropy.detach(), approx_kl, clipfrac,
                                     torch.ones((), device=device)])
    pg, vl, ent, kl, cf, n = (sums / sums[5]).tolist()  # one device->host sync per epoch
    return {"pg_loss": pg, "v_loss": vl, "entropy": ent, "approx_kl": kl, "clipfrac": cf}


def save_checkpoint(directory: str, policy: nn.Module, optimizer, epoch: int, agent_steps: int) -> str:
    """Write `latest.pt` atomically: a reader never sees a half-written checkpoint."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "latest.pt")
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save({"policy": policy.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "agent_steps": agent_steps}, tmp)
        os.replace(tmp, path)
    except BaseException:  # a trial stopped mid-save (Ctrl-C, SystemExit) too: leave no temp file behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def run_eval(policy: nn.Module, make_env: Callable[[], object], steps: int, device, seed: int) -> dict[str, float]:
    """Blocking evaluation: roll the current policy in a fresh env, return episode stats."""
    env = make_env()
    obs, _ = env.reset(seed=seed + 10_000)
    infos: list[dict] = []
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for _ in range(steps):
            if env.done:
                obs, _ = env.reset()
            logits, _ = policy(torch.from_numpy(obs).to(device))
            action, _ = sample_actions(logits, gen)
            obs, _, _, _, info = env.step(action.to(torch.int32).cpu().numpy())
            infos.extend(info)
    env.close()
    stats = mean_infos(infos)
    return {k: stats[k] for k in ("heart.get", "episode_return") if k in stats}
