"""A stand-in for a user's training script: steps a tiny numpy 'env' and prints its progress the
way CleanRL does (`global_step=N, episodic_return=R`). COST_US adds a busy-wait per step (a
hidden cost); EXIT_AFTER ends it early with that exit status; SILENT prints nothing."""

import os
import sys
import time

import numpy as np

cost = float(os.environ.get("COST_US", "0")) * 1e-6
exit_after = float(os.environ.get("EXIT_AFTER", "0"))
silent = os.environ.get("SILENT") == "1"
print("starting up", flush=True)
rng = np.random.default_rng(0)
state = np.zeros(64)
step, start = 0, time.monotonic()


def _hidden_cost(seconds: float) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


while True:
    for _ in range(200):
        state = np.tanh(state * 0.9 + rng.standard_normal(64) * 0.1)
        if cost:
            _hidden_cost(cost)
        step += 1
    if not silent:
        print(f"global_step={step}, episodic_return={float(state.sum()):.3f}")
    if exit_after and time.monotonic() - start > exit_after:
        sys.exit(int(os.environ.get("EXIT_CODE", "3")))
