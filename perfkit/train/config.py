"""PPO's hyper-parameters, validated, importable without torch: the command line checks
`--ppo KEY=VALUE` before anything heavy loads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


class PPOConfigError(ValueError):
    """A PPO setting out of its valid range; the message names the field, the value and the range."""


@dataclass
class PPOConfig:
    """Hyper-parameters (names as in the PPO paper and CleanRL). Validated on construction: a
    negative minibatch or zero update epochs would otherwise run and report SPS with no learning,
    a zero horizon or a NaN learning rate crash mid-trial."""

    num_steps: int = 128  # rollout horizon per epoch: env steps per agent collected before each update
    update_epochs: int = 1  # passes (SGD epochs) over each collected batch of num_steps x agents samples
    minibatch_size: int = 4096  # samples (agent-steps) per gradient step; capped at the batch size
    learning_rate: float = 1e-3  # Adam step size (per gradient step, no schedule)
    gamma: float = 0.99  # discount per env step, in [0, 1]
    gae_lambda: float = 0.95  # GAE bias/variance trade-off, in [0, 1]
    clip_coef: float = 0.2  # PPO ratio clip: the policy ratio is clipped to [1 - c, 1 + c]
    ent_coef: float = 0.01  # weight of the entropy bonus in the loss (dimensionless)
    vf_coef: float = 0.5  # weight of the value loss in the loss (dimensionless)
    max_grad_norm: float = 0.5  # global L2 norm the gradients are clipped to before each step
    hidden: int = 128  # MLP width in units (2 hidden layers)
    eval_steps: int = 1000  # env steps of one blocking evaluation (one arena episode)

    def __post_init__(self) -> None:
        for name in ("num_steps", "update_epochs", "minibatch_size", "hidden", "eval_steps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise PPOConfigError(f"{name} {v!r} must be an integer >= 1")
        # (field, lowest, lowest allowed?, highest or None); "finite" rules out nan and inf
        ranges = (("learning_rate", 0.0, False, None), ("gamma", 0.0, True, 1.0), ("gae_lambda", 0.0, True, 1.0),
                  ("clip_coef", 0.0, False, None), ("ent_coef", 0.0, True, None), ("vf_coef", 0.0, True, None),
                  ("max_grad_norm", 0.0, False, None))
        for name, low, closed, high in ranges:
            v = getattr(self, name)
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (v >= low if closed else v > low) and (high is None or v <= high))
            if not ok:
                valid = f"in [{low:g}, {high:g}]" if high is not None else f"{'>=' if closed else '>'} {low:g}"
                raise PPOConfigError(f"{name} {v!r} must be a finite number {valid}")

    def to_dict(self) -> dict:
        return asdict(self)
