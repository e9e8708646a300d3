"""Checkpoint and evaluation cadence: `off`, `epochs:N` or `seconds:S` (docs/axes.md, checkpoint).

The original counted "every 60 s" intervals in epochs (`epoch % interval == 0`); perfkit supports
both units so a user can see what each costs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Cadence:
    unit: str  # "off" | "epochs" | "seconds"
    every: float = 0.0
    _last: float | None = None

    @classmethod
    def parse(cls, text: str) -> Cadence:
        if text == "off":
            return cls("off")
        unit, _, n = text.partition(":")
        if unit not in ("epochs", "seconds"):
            raise ValueError(f"invalid cadence {text!r}; valid: off, epochs:N, seconds:S")
        every = float(n)
        if every <= 0 or (unit == "epochs" and every != int(every)):
            raise ValueError(f"invalid cadence {text!r}; N must be a positive integer, S a positive number")
        return cls(unit, every)

    def start(self, now: float) -> None:
        self._last = now

    def due(self, epoch: int, now: float) -> bool:
        """Is the action due after `epoch` (counted from 1) finished at time `now`?"""
        if self.unit == "off":
            return False
        if self.unit == "epochs":
            return epoch % int(self.every) == 0
        if self._last is None:
            self._last = now
        if now - self._last >= self.every:
            self._last = now
            return True
        return False

    def __str__(self) -> str:
        return "off" if self.unit == "off" else f"{self.unit}:{self.every:g}"
