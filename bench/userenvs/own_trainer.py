"""A user's own small trainer, in a progress format none of perfkit's recognisers knows:

    [iter 12] 24,576 frames | return 23.1

REINFORCE with a linear softmax policy (numpy only) on `audited_cartpole` (this folder), eight
envs stepped in a loop. `HIDDEN_COST_US` switches on the env wrapper's per-step cost. It runs
until it is stopped (or `--frames` are done).
"""

from __future__ import annotations

import argparse

import numpy as np
from audited_cartpole import make


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10**12)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    envs = [make() for _ in range(args.envs)]
    obs = np.stack([e.reset(seed=args.seed + i)[0] for i, e in enumerate(envs)])
    w = np.zeros((4, 2))
    frames, it, returns, running = 0, 0, [], np.zeros(args.envs)
    print("own trainer: starting", flush=True)
    while frames < args.frames:
        grads, advs = [], []
        for _ in range(args.horizon):
            logits = obs @ w
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            act = (rng.random(args.envs) < p[:, 1]).astype(int)
            for i, e in enumerate(envs):
                o, r, term, trunc, _ = e.step(int(act[i]))
                running[i] += r
                if term or trunc:
                    returns.append(running[i])
                    running[i] = 0.0
                    o, _ = e.reset()
                grads.append(np.outer(obs[i], np.eye(2)[act[i]] - p[i]))
                advs.append(r)
                obs[i] = o
            frames += args.envs
        adv = np.asarray(advs) - np.mean(advs)
        w += 1e-3 * np.tensordot(adv, np.asarray(grads), axes=1)
        it += 1
        if it % 4 == 0:
            mean = float(np.mean(returns[-20:])) if returns else 0.0
            print(f"[iter {it}] {frames:,} frames | return {mean:.1f}", flush=True)


if __name__ == "__main__":
    main()
