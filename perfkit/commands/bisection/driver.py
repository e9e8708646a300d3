"""The driver: runs a bisection (`Bisect`) with its options (`BisectOptions`): the commits'
trainers, paired rounds, the phases (the ends, then each step), the record saved after every
step, the cleanup."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perfkit.commands.bisection.evidence import Evidence, Noise, classify, side
from perfkit.commands.bisection.git import BisectError, Commit, Worktrees, diffstat
from perfkit.commands.bisection.search import Search, conclude
from perfkit.commands.bisection.signals import Interrupts
from perfkit.commands.bisection.trainers import CommitBroken, TrainerProcess
from perfkit.core import stats
from perfkit.engine.rounds import rotation


@dataclass
class BisectOptions:
    metric: str = "sps"  # or a learning key (heart.get, episode_return, ...)
    block_seconds: float = 0.5  # training per commit per round (sps)
    learn_epochs: int = 40  # a fresh training run per commit per round (a learning metric)
    min_rounds: int = 6  # per tested commit; the ends get at least twice as many
    max_minutes: float = 15.0
    step_minutes: float = 2.0  # at most, per tested commit, before it is called "cannot tell"
    ends_minutes: float = 3.0  # at most, to measure the regression between the ends
    precision: float = 0.01  # the ends are measured until the regression is known to +-this (log SPS)


class Bisect:
    """Runs the search: trainers per commit, paired rounds, verdicts, the record after every step."""

    def __init__(self, repo, commits: list[Commit], spec: dict, run_dir: Path, opts: BisectOptions, record,
                 progress: Callable[[str], None] = lambda s: None, clock: Callable[[], float] = time.monotonic,
                 trainers=None):
        self.repo, self.commits, self.spec, self.run_dir, self.opts = repo, commits, spec, Path(run_dir), opts
        self.record, self.progress, self.clock = record, progress, clock
        self.n = len(commits) - 1
        # the built-in trainer on the user's env, or the user's own command (CommandTrainers)
        self.trainers = trainers or TrainerProcess(spec, self.run_dir / "logs" / "trainers.log")
        self.keys: set[str] = set()  # the trainers that process holds now
        self.evidence: dict[int, Evidence] = {}
        self.worktrees = Worktrees(repo, self.run_dir / "worktrees")
        self.start = clock()
        self.round_seed = 0

    # -- processes
    def load(self, key: str, i: int) -> None:
        """A fresh trainer of commit i's code under `key` (its worktree's env, imported alone)."""
        path = self.worktrees.add(self.commits[i]).resolve()
        paths = [str(path)] + ([str(path / "src")] if (path / "src").is_dir() else [])
        got = self.trainers.ask(cmd="load", key=key, paths=paths)
        module = got.get("module")
        if module and not Path(module).resolve().is_relative_to(path):
            self.trainers.ask(cmd="drop", key=key)
            raise CommitBroken(f"the env module was imported from {module}, not from this commit's worktree")
        self.keys.add(key)

    def drop(self, *keys: str) -> None:
        for key in keys:
            held = key in self.keys
            self.keys.discard(key)
            if held and self.trainers.proc is not None:
                with contextlib.suppress(CommitBroken):  # a trainer that is gone is dropped already
                    self.trainers.ask(cmd="drop", key=key)

    def value(self, key: str) -> float:
        try:
            return self._value(key)
        except CommitBroken as e:
            if key[0] in "gb":  # an end that built once and then failed: nothing can be compared
                raise RuntimeError(f"the {'good' if key[0] == 'g' else 'bad'} end's trainer failed: {e}") from None
            raise

    def _value(self, key: str) -> float:
        if self.opts.metric == "sps":
            got = self.trainers.ask(cmd="block", key=key, seconds=self.opts.block_seconds)
            return math.log(got["agent_steps"] / got["seconds"])
        got = self.trainers.ask(cmd="learn", key=key, epochs=self.opts.learn_epochs, seed=self.round_seed)
        if self.opts.metric not in got["learning"]:
            raise BisectError(f"--metric {self.opts.metric!r}: no episode reported it in the last 20% of a "
                              f"{self.opts.learn_epochs}-epoch training (episodes there reported: "
                              f"{', '.join(sorted(got['learning'])) or 'nothing'}); raise --learn-epochs so episodes "
                              "end late in the training, or use --metric sps")
        return float(got["learning"][self.opts.metric])

    def left(self) -> float:
        return 60 * self.opts.max_minutes - (self.clock() - self.start)

    def rounds(self, slots: list[tuple[str, list[float]]], enough: Callable[[], bool], cap: float) -> None:
        """Rounds over the (trainer key, values) slots in rotating order until `enough()` (after
        at least min_rounds) or `cap` seconds."""
        t0 = self.clock()
        for r in range(10_000):
            self.round_seed += 1
            for key, values in rotation(slots, r):
                values.append(self.value(key))
            if r + 1 >= self.opts.min_rounds and (enough() or self.clock() - t0 >= cap or self.left() <= 0):
                return

    # -- the phases
    def noise(self) -> Noise:
        """The regression and the block noise from every round so far (the ends' and each step's)."""
        g = self.record.ends["evidence"]["g"] + [x for ev in self.evidence.values() for x in ev.g[:ev.rounds]]
        b = self.record.ends["evidence"]["b"] + [x for ev in self.evidence.values() for x in ev.b[:ev.rounds]]
        return Noise.from_pairs(g, b)

    def measure_ends(self) -> bool:
        """The regression between the ends alone; False when it is not beyond noise."""
        ends = Evidence()
        for key, i, name in (("g-ends", 0, "good"), ("b-ends", self.n, "bad")):
            try:
                self.load(key, i)
            except CommitBroken as e:
                raise BisectError(f"the scenario fails at the {name} end ({self.commits[i].short}): {e}") from None

        def enough() -> bool:
            if len(ends.g) < 2 * self.opts.min_rounds:
                return False
            d, lo, hi = stats.mean_interval(np.subtract(ends.b, ends.g))
            return not (lo <= 0 <= hi) and (hi - lo) / 2 <= max(self.opts.precision, abs(d) / 4)

        self.progress(f"measuring the ends: {self.commits[0].short} (good) against {self.commits[self.n].short} (bad)")
        self.rounds([("g-ends", ends.g), ("b-ends", ends.b)], enough,
                    60 * min(self.opts.ends_minutes, self.opts.max_minutes))
        self.drop("g-ends", "b-ends")
        d, lo, hi = stats.mean_interval(np.subtract(ends.b, ends.g))
        found = not (lo <= 0 <= hi)
        self.record.ends = {"delta": d, "ci": (lo, hi), "rounds": len(ends.g), "evidence": {"g": ends.g, "b": ends.b}}
        self.progress(f"the ends: bad {self._fmt(d, lo, hi)} of good over {len(ends.g)} rounds")
        return found

    def _fmt(self, d, lo, hi) -> str:
        if self.opts.metric == "sps":
            return f"{math.exp(d):.3f}x [{math.exp(lo):.3f}, {math.exp(hi):.3f}]"
        return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] ({self.opts.metric})"

    def decide(self, ev: Evidence, second: float | None) -> str | None:
        """The verdict the rounds so far support, None while they cannot tell. In the second
        search (`second`: the level of the commit found past the bad end) the side is read against
        that level and bad's: like that commit is the search's "good" side."""
        noise = self.noise()
        if second is None:
            return classify(ev, noise)
        s = side(ev, noise, 1.0, second)
        return None if s == 0 else ("good" if s > 0 else "bad")

    def test(self, i: int, second: float | None = None) -> str:
        """Classify commit i (paired with both ends, a round at a time, until it can tell or its
        budget is spent: then "unclear")."""
        from perfkit.records.bisection import Step

        c = self.commits[i]
        t0 = self.clock()
        ev = self.evidence.setdefault(i, Evidence())
        step = len(self.record.steps)
        keys = (f"g{step}", f"m{step}", f"b{step}")  # fresh trainers of the three, of one age
        try:
            for key, j in zip(keys, (0, i, self.n), strict=True):
                try:
                    self.load(key, j)
                except CommitBroken as e:
                    if j != i:
                        raise RuntimeError(f"commit {self.commits[j].short} built before and fails now: {e}") from None
                    raise
            self.rounds(list(zip(keys, (ev.g, ev.m, ev.b), strict=True)), lambda: self.decide(ev, second) is not None,
                        min(60 * self.opts.step_minutes, max(self.left(), 0)))
            verdict, error = self.decide(ev, second) or "unclear", None
        except CommitBroken as e:
            verdict, error = "skip", str(e)
        finally:
            del ev.g[ev.rounds:], ev.b[ev.rounds:]  # a round cut short is dropped whole
            self.drop(*keys)
        p, plo, phi = ev.level(self.noise().d)
        d, lo, hi = ev.to_good()
        if self.opts.metric == "sps":
            d, lo, hi = math.exp(d), math.exp(lo), math.exp(hi)
        self.record.steps.append(Step(i, c.sha, c.subject, "main" if second is None else "second", verdict, p,
                                      (plo, phi), d, (lo, hi), ev.rounds, self.clock() - t0, error, ev.to_dict()))
        self.progress(f"[{len(self.record.steps)}] {c.short} ({i}/{self.n}) {c.subject[:50]!r}: "
                      + (f"skipped: {error[:200]}" if error else
                         f"level {p:.2f} [{plo:.2f}, {phi:.2f}], {self._fmt(*ev.to_good())} of good, {verdict}"
                         + (" (read against the level of the commit past bad)" if second is not None else "")
                         + f", {ev.rounds} rounds, {self.clock() - t0:.0f} s"))
        return verdict

    def run(self, save: Callable[[], None], interrupts: Interrupts | None = None) -> None:
        """The whole search, the record saved after every step. Ctrl-C or SIGTERM (the first one;
        see `Interrupts`: pass the caller's, or one is set up here) stops it: the record says
        interrupted, and the trainers are ended and the worktrees removed whatever signals follow."""
        with contextlib.ExitStack() as stack:
            stop = interrupts if interrupts is not None else stack.enter_context(Interrupts())
            try:
                self._run(save)
            except KeyboardInterrupt:
                self.record.interrupted = True
                self.record.outcome = {"outcome": "interrupted", "change_points": []}
            finally:
                for _ in range(2):  # a second pass only when the first signal came as the run ended by itself
                    try:
                        stop.hold()
                        self._cleanup(save, stop)
                        break
                    except KeyboardInterrupt:
                        self.record.interrupted = True

    def _cleanup(self, save: Callable[[], None], stop: Interrupts) -> None:
        """End the trainers, remove the worktrees, save the record (signals held: see `run`)."""
        self.trainers.close(kill=self.record.interrupted)
        self.keys.clear()
        self.worktrees.close()
        self.record.seconds = self.clock() - self.start
        self.record.interrupted = self.record.interrupted or stop.received > 0
        for i in self.record.outcome.get("change_points", []):
            self.record.outcome.setdefault("diffstat", {})[self.commits[i].sha] = diffstat(self.repo,
                                                                                         self.commits[i].sha)
        save()

    def _run(self, save: Callable[[], None]) -> None:
        found = self.measure_ends()
        save()
        if not found:
            self.record.outcome = {"outcome": "no-regression", "change_points": [],
                                   "why": "the good and bad ends do not differ beyond noise"}
            return
        main = Search(0, self.n)
        self._search(main, None, save)
        second = None
        beyond = [i for i, v in main.verdicts.items() if v == "beyond-bad"]
        if main.done and not main.untestable and beyond and self.left() > 0:
            j = max(beyond)
            level = self.evidence[j].level(self.noise().d)[0]
            self.progress(f"{self.commits[j].short} is slower than the bad end (level {level:.2f}): looking for "
                          "a second change after it")
            second = Search(j, self.n)
            for i, ev in self.evidence.items():  # what the first search measured there still counts
                v = self.decide(ev, level) if j < i < self.n and ev.rounds else None
                if v is not None:
                    second.record(i, v)
            self._search(second, level, save)
        if not main.done or (second is not None and not second.done):
            self.record.outcome = {"outcome": "incomplete", "change_points": [],
                                   "candidates": list(range(main.lo + 1, main.hi + 1)),
                                   "why": f"the time budget ({self.opts.max_minutes:g} min) ran out"}
        else:
            self.record.outcome = conclude(self.n, main, second)

    def _search(self, search: Search, second: float | None, save) -> None:
        while not search.done and self.left() > 0:
            i = search.next()
            search.record(i, self.test(i, second))
            save()
