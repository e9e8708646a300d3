"""A user's short script around PufferLib's own trainer (`pufferlib.pufferl.PuffeRL`, unmodified):
CartPole behind the audit wrapper (`audited_cartpole`, this folder), PufferLib's Gymnasium adapter
and serial vector env, its default MLP policy, and a logger that prints each of PuffeRL's log
dicts as one line of JSON (`{"SPS": ..., "agent_steps": 16384, ...}`), which `--progress puffer`
reads. PuffeRL's own dashboard (a full screen redrawn every 0.25 s, steps abbreviated to "16.4K")
is switched off with `--quiet-dashboard`.

    PYTHONPATH=bench/userenvs python bench/userenvs/puffer_trainer.py --total-timesteps 1000000

`HIDDEN_COST_US` switches on the wrapper's per-step cost. PufferLib ships no config files in
`pufferlib-core`, so the train config is written out here, as a user's script would.
"""

from __future__ import annotations

import argparse
import json
import sys

import pufferlib
import pufferlib.emulation
import pufferlib.models
import pufferlib.pufferl
import pufferlib.vector
import torch
from audited_cartpole import make


class PrintLogger:
    """PuffeRL's logger interface (`log(logs, step)`, `close(path)`): one JSON line per log."""

    def __init__(self):
        self.run_id = "puffer-trainer"

    def log(self, logs: dict, step: int) -> None:
        print(json.dumps({k: v for k, v in logs.items() if isinstance(v, (int, float))}), flush=True)

    def close(self, model_path) -> None:
        pass


def train_config(args) -> dict:
    return dict(
        env="audited_cartpole", seed=args.seed, device="cpu", torch_deterministic=True, cpu_offload=False,
        total_timesteps=args.total_timesteps, batch_size="auto", bptt_horizon=args.horizon,
        minibatch_size=args.envs * args.horizon, max_minibatch_size=args.envs * args.horizon, update_epochs=1,
        learning_rate=args.learning_rate, anneal_lr=False, optimizer="adam", adam_beta1=0.9, adam_beta2=0.999,
        adam_eps=1e-8, gamma=0.99, gae_lambda=0.95, clip_coef=0.2, vf_coef=0.5, vf_clip_coef=0.2, ent_coef=0.01,
        max_grad_norm=0.5, prio_alpha=0.0, prio_beta0=1.0, vtrace_rho_clip=1.0, vtrace_c_clip=1.0,
        use_rnn=False, compile=False, compile_mode="default", compile_fullgraph=False, precision="float32",
        checkpoint_interval=10**9, data_dir=args.data_dir,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-timesteps", type=int, default=10**12)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=64)
    ap.add_argument("--learning-rate", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="puffer-experiments")
    ap.add_argument("--quiet-dashboard", action="store_true", help="leave out PuffeRL's redrawn dashboard")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    vecenv = pufferlib.vector.make(pufferlib.emulation.GymnasiumPufferEnv, num_envs=args.envs,
                                   backend=pufferlib.vector.Serial, env_kwargs={"env_creator": make})
    policy = pufferlib.models.Default(vecenv.driver_env, hidden_size=64)
    if args.quiet_dashboard:
        pufferlib.pufferl.PuffeRL.print_dashboard = lambda self, *a, **k: None
    trainer = pufferlib.pufferl.PuffeRL(train_config(args), vecenv, policy, PrintLogger())
    print("puffer trainer: starting", flush=True)
    while trainer.global_step < args.total_timesteps:
        trainer.evaluate()
        trainer.train()
    trainer.vecenv.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
