"""A stand-in trainer that reports through perfkit.probe (and prints nothing perfkit recognises):
its step counter and two phases, `rollout` and `learn`. COST_US adds a busy-wait per rollout step."""

import os
import time

import numpy as np

from perfkit import probe

cost = float(os.environ.get("COST_US", "0")) * 1e-6
rng = np.random.default_rng(0)
state = np.zeros(64)
while True:
    with probe.phase("rollout"):
        for _ in range(100):
            state = np.tanh(state * 0.9 + rng.standard_normal(64) * 0.1)
            if cost:
                t = time.perf_counter()
                while time.perf_counter() - t < cost:
                    pass
    probe.steps(100)
    with probe.phase("learn"):
        w = rng.standard_normal((64, 64)) @ state
    print(f"update done, norm {float(np.linalg.norm(w)):.2f}")
