"""Rounds: every variant once per round, until a stop rule says enough. One place for every command.

A *round* runs each variant once (a trial, an epoch, a block of rollout steps). Rounds rotate the
order (A B C, B C A, C A B, ...) where the variants share one process, so none always follows
another. A `StopRule` ends the rounds after a number of them, once every ratio's interval is
within ±precision (after a minimum of rounds and of seconds), or when a time budget is spent. The
rule looks only at the interval's width, never at which side of 1.0 it lies, so stopping early
does not favour a verdict.

`Rounds` is what a backend's loop holds: it counts, rotates, keeps the clock and says why it
stopped. The compare backends (fresh processes, one session process, Ray), the gate and bisect
each drive their own kind of block through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from perfkit.core import stats

T = TypeVar("T")

PRECISION, TIME, ROUNDS = "precision", "time", "rounds"


def rotation(items: Sequence[T], r: int) -> list[T]:
    """Round `r`'s order: `items` rotated left by r (A B C, B C A, C A B, A B C, ...)."""
    items = list(items)
    if not items:
        return []
    k = r % len(items)
    return items[k:] + items[:k]


@dataclass(frozen=True)
class StopRule:
    """When rounds stop: after `rounds` rounds (None: no limit), or once `precise()` says every
    ratio is known to ±`precision` (after at least `min_rounds` rounds and `min_seconds`), or when
    `max_seconds` pass."""

    rounds: int | None
    precision: float | None = None
    max_seconds: float | None = None
    min_rounds: int = stats.MIN_ROUNDS
    reruns: int = 1  # fresh processes: times a round disturbed by other processes is run again
    min_seconds: float = 0.0  # the precision may stop the run only after this long (explain: enough samples)

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "precision": self.precision, "max_seconds": self.max_seconds,
                "min_rounds": self.min_rounds, "reruns": self.reruns, "min_seconds": self.min_seconds}


class Rounds:
    """The state of one run of rounds: how many finished, since when, and why they stopped.

        rounds = Rounds(rule)
        while rounds.more():
            for v in rounds.order(variants): ...   # one round
            rounds.finished(precise=lambda: ...)  # counts it; may stop
        rounds.reason                             # "precision", "time", "rounds" or what the loop set
    """

    def __init__(self, rule: StopRule, clock: Callable[[], float] = time.monotonic, min_rounds: int | None = None):
        self.rule, self.clock = rule, clock
        self.min_rounds = rule.min_rounds if min_rounds is None else min_rounds  # in this loop's rounds
        self.done = 0
        self.start = clock()
        self.reason: str | None = None

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def more(self) -> bool:
        """Whether another round should start."""
        if self.reason is None and self.rule.rounds is not None and self.done >= self.rule.rounds:
            self.reason = ROUNDS
        return self.reason is None

    def order(self, items: Sequence[T]) -> list[T]:
        """This round's order: `items` rotated by the number of rounds finished."""
        return rotation(items, self.done)

    def finished(self, precise: Callable[[], bool] | None = None) -> bool:
        """Count a finished round; True if the rule now stops the rounds (`reason` says why).
        `precise()` is asked only once the minimum of rounds and seconds is reached."""
        self.done += 1
        rule = self.rule
        if rule.precision is not None and precise is not None and self.done >= self.min_rounds \
                and self.elapsed >= rule.min_seconds and precise():
            self.reason = PRECISION
        elif rule.rounds is not None and self.done >= rule.rounds:
            self.reason = ROUNDS  # the plan is done: said so even when its time ran out with it
        elif rule.max_seconds is not None and self.elapsed >= rule.max_seconds:
            self.reason = TIME
        return self.reason is not None

    def stop(self, reason: str) -> None:
        """Stop for a reason of the loop's own (a failure, an interrupt, a budget of steps)."""
        self.reason = reason
