"""The search over commit indices from verdicts alone (`Search`), and the outcome the verdicts
support (`conclude`)."""

from __future__ import annotations

from typing import Any

BAD_LIKE, GOOD_LIKE = ("bad", "beyond-bad"), ("good", "beyond-good")


class Search:
    """Binary search over commit indices lo..hi (lo good-like, hi bad-like) from verdicts alone:
    `next()` the index to test (the untested one nearest the midpoint; None when done), `record()`
    its verdict. "skip" and "unclear" narrow nothing: a neighbour is tested instead."""

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        self.verdicts: dict[int, str] = {}

    def next(self) -> int | None:
        mid = (self.lo + self.hi) / 2
        open_ = [i for i in range(self.lo + 1, self.hi) if i not in self.verdicts]
        return min(open_, key=lambda i: (abs(i - mid), i)) if open_ else None

    def record(self, i: int, verdict: str) -> None:
        self.verdicts[i] = verdict
        if verdict in BAD_LIKE and self.lo < i < self.hi:
            self.hi = i
        elif verdict in GOOD_LIKE and self.lo < i < self.hi:
            self.lo = i

    @property
    def untestable(self) -> list[int]:
        """Commits between lo and hi that could not be classified (skipped or unclear)."""
        return [i for i in range(self.lo + 1, self.hi) if self.verdicts.get(i) in ("skip", "unclear")]

    @property
    def done(self) -> bool:
        return self.next() is None


def conclude(n: int, main: Search, second: Search | None = None) -> dict[str, Any]:
    """The outcome of the verdicts: "found" (one first bad commit), "two-changes" (a regression
    and a later partial recovery, both change points), "range" (the first bad commit is one of
    several that could not be classified), or "inconsistent" (evidence no single step explains)."""
    beyond_good = sorted(i for i, v in main.verdicts.items() if v == "beyond-good")
    if beyond_good:
        return {"outcome": "inconsistent", "change_points": [],
                "why": "commits faster than the good end: " + ", ".join(map(str, beyond_good)),
                "commits": beyond_good + [main.hi]}
    if main.untestable:
        return {"outcome": "range", "change_points": [], "candidates": main.untestable + [main.hi],
                "why": "commits between the last good-like and the first bad-like could not be classified"}
    if second is None:
        return {"outcome": "found", "change_points": [main.hi]}
    if second.untestable:
        return {"outcome": "inconsistent", "change_points": [main.hi],
                "candidates": second.untestable + [second.hi],
                "why": "a commit slower than the bad end: the regression is not one step, and the second change "
                       "could not be located"}
    return {"outcome": "two-changes", "change_points": [main.hi, second.hi]}
