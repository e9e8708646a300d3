"""A stand-in for a user's trainer that learns: prints `global_step=N, episodic_return=R` the way
CleanRL does, R rising towards a ceiling at a speed set by --lr, with per-seed noise (--seed).
Fast and deterministic per seed; --total-timesteps ends it by itself."""

import argparse
import math
import random
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--lr", type=float, default=1.0)
ap.add_argument("--total-timesteps", type=int, default=10**12)
ap.add_argument("--exit-code", type=int, default=0)
ap.add_argument("--first-step", type=int, default=0, help="the counter's value when it starts (a resumed run)")
args = ap.parse_args()
rng = random.Random(args.seed)
skill = 1.0 + 0.05 * rng.gauss(0, 1)  # this seed's luck
print("learner: starting", flush=True)
step = args.first_step
while step < args.total_timesteps:
    step += 500
    ret = 100 * skill * (1 - math.exp(-args.lr * step / 20_000)) + rng.gauss(0, 2)
    print(f"global_step={step}, episodic_return={ret:.2f}", flush=True)
    time.sleep(0.002)
sys.exit(args.exit_code)
