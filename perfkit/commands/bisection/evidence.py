"""What a step measured and what it supports: paired rounds (`Evidence`), the regression and the
block noise (`Noise`), and the sequential test that turns them into a verdict (`sprt`, `side`,
`classify`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from perfkit.core import stats

# A bad-like commit whose level is estimated above 1 (a good-like one below -BEYOND) is also tested
# for a level past that end: a commit decided early (far from the middle) has a rough level.
BEYOND = 0.25
ALPHA = 0.005  # each test's chance of the wrong side (either way), however often it looks


@dataclass
class Evidence:
    """Paired rounds of good, the commit under test (mid) and bad, in metric space (log SPS)."""

    g: list[float] = field(default_factory=list)
    m: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return len(self.m)

    def zs(self, t: float, sign: float) -> np.ndarray:
        """Per round, sign·(m - g - t·(b - g)): above zero, the commit is past level t."""
        n = self.rounds
        g, m, b = (np.asarray(x[:n], float) for x in (self.g, self.m, self.b))
        return sign * (m - g - t * (b - g))

    def level(self, d: float) -> tuple[float, float, float]:
        """(m - g) / d with its 95% interval, d the regression (bad - good) pooled over every round
        of the run: 0 is good's level, 1 is bad's. (D is known far better than one commit's m - g,
        so its own uncertainty is left out.)"""
        mean, lo, hi = self.to_good()
        if not d:
            return math.nan, math.nan, math.nan
        low, high = sorted((lo / d, hi / d))
        return mean / d, low, high

    def to_good(self) -> tuple[float, float, float]:
        """The commit against good: mean of m - g (exponentiate for an SPS ratio) with its interval."""
        return stats.mean_interval(np.asarray(self.m, float) - np.asarray(self.g, float))

    def to_dict(self) -> dict[str, list[float]]:
        return {"g": self.g, "m": self.m, "b": self.b}


@dataclass(frozen=True)
class Noise:
    """The regression D (mean of bad - good over every round so far, its sign) and the noise of
    one block, sigma (the spread of bad - good over sqrt 2): what a step's test is scaled by."""

    d: float
    sigma: float

    @classmethod
    def from_pairs(cls, g: list[float], b: list[float]) -> Noise:
        diff = np.subtract(b, g)
        return cls(float(diff.mean()), float(diff.std(ddof=1)) / math.sqrt(2) if len(diff) > 1 else math.nan)

    @property
    def sign(self) -> float:
        return math.copysign(1.0, self.d)


def sprt(z, delta: float, sigma: float, alpha: float = ALPHA) -> int:
    """Wald's sequential test of mean -delta (returns -1) against +delta (+1) for normal z of
    spread sigma; 0: keep going. Each error (either way) has probability about alpha, however
    many times it is looked at, so rounds can be added one by one. Each z is clipped to
    +-(delta + 3 sigma) so that one stalled block (a neighbour's burst) cannot decide alone."""
    if not (delta > 0 and sigma > 0) or len(z) == 0:
        return 0
    bound = delta + 3 * sigma
    llr = 2 * delta / sigma**2 * float(np.clip(np.asarray(z, float), -bound, bound).sum())
    a = math.log((1 - alpha) / alpha)
    return 1 if llr >= a else -1 if llr <= -a else 0


def side(ev: Evidence, noise: Noise, low: float, high: float, alpha: float = ALPHA) -> int:
    """Is the commit at level `low` (-1) or `high` (+1), 0 not yet: the SPRT on z at the level
    halfway between, scaled by the regression and the noise: the larger of the run's block noise
    (as z = m - (1-c) g - c b compounds it) and this commit's own spread of z, so that a noisier
    process or a noisier hour cannot make the test overconfident."""
    centre = (low + high) / 2
    delta = abs(noise.d) * (high - low) / 2
    if 0 <= centre <= 1:  # between the ends: against both, paired in the round
        z = ev.zs(centre, noise.sign)
        sigma = noise.sigma * math.sqrt(1 + (1 - centre) ** 2 + centre**2)
    else:  # past an end: against that end alone (less noise than reaching across to the other)
        end, at = (ev.b, 1.0) if centre > 1 else (ev.g, 0.0)
        n = ev.rounds
        z = noise.sign * (np.asarray(ev.m[:n], float) - np.asarray(end[:n], float)) - (centre - at) * abs(noise.d)
        sigma = noise.sigma * math.sqrt(2)
    if len(z) >= 4:
        sigma = max(sigma, float(np.std(z, ddof=1)))
    return sprt(z, delta, sigma, alpha)


def classify(ev: Evidence, noise: Noise, beyond: bool = True) -> str | None:
    """A main-search verdict, or None while it cannot tell: "good" (level 0 rather than 1),
    "bad", and with `beyond`, for a level that looks past an end, "beyond-bad" (level 2 rather
    than 1) or "beyond-good" (-1 rather than 0): the history is not one step."""
    s = side(ev, noise, 0.0, 1.0)
    if s == 0:
        return None
    p = ev.level(noise.d)[0]
    if s > 0 and beyond and p > 1:
        more = side(ev, noise, 1.0, 2.0)
        return None if more == 0 else ("beyond-bad" if more > 0 else "bad")
    if s < 0 and beyond and p < -BEYOND:
        more = side(ev, noise, -1.0, 0.0)
        return None if more == 0 else ("beyond-good" if more < 0 else "good")
    return "bad" if s > 0 else "good"
