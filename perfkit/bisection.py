"""`perfkit bisect`: the commit that moved SPS (or a learning metric) in a user's repository.

Each tested commit is checked out into its own `git worktree` under the run directory (the user's
working tree and index are never touched; the worktrees are removed at the end, also on Ctrl-C).
One process (`perfkit.epochs`) imports each commit's env from its worktree, in isolation, and
holds a trainer per commit: for every step, fresh trainers of the good end, the commit under test
and the bad end take turns, a block of training each per round, in rotating order. Sharing one
process matters: two processes of the very same code can differ by a few per cent for their whole
life, more than the 5% regression a bisection must place.

Levels. Per round r the metric (log SPS, or the learning value) of good, mid and bad is g, m, b.
The regression D = b - g is measured first between the ends alone (if it is not beyond noise,
there is nothing to bisect), then pooled over every round of the run, as is the noise of one
block. A commit's level is (m - g) / D: 0 is good's level, 1 is bad's. The step's question is
which end it is closer to, asked by Wald's sequential probability ratio test of level 0 against
level 1 on z = m - g - D/2 per round (paired within the round): a round at a time, each wrong
answer about 0.5% likely however many rounds it takes ("cannot tell yet" adds a round), up to the
step's budget. A commit that cannot tell even then, or whose env fails to build, is left out (as
`git bisect skip`) and a neighbour is tested instead.

Non-monotonic histories. A bad-like commit whose level is estimated above 1 is also tested, the
same way, for level 2 against level 1: one at level 2 (say commit k costs 10% and k+10 gives half
of it back) means the regression is not one step. The search then also looks for the second
change point, between that commit and the bad end, and reports both. A commit clearly better
than the good end is reported as inconsistent evidence, with the commits involved, never as a
certain culprit.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perfkit import stats

# A bad-like commit whose level is estimated above 1 (a good-like one below -BEYOND) is also tested
# for a level past that end: a commit decided early (far from the middle) has a rough level.
BEYOND = 0.25
ALPHA = 0.005  # each test's chance of the wrong side (either way), however often it looks


class BisectError(ValueError):
    """Bad input (not a repository, unknown revision, ...): a usage error naming the problem."""


class CommitBroken(RuntimeError):
    """The scenario cannot run at this commit (import or build error): the commit is skipped."""


# ----------------------------------------------------------------------------------------- git

def git(repo: str | os.PathLike, *args: str) -> str:
    p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, ["git", *args], p.stdout, p.stderr)
    return p.stdout


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:10]


def commit_range(repo: str | os.PathLike, good: str, bad: str) -> list[Commit]:
    """[good, c1, ..., bad] along bad's first-parent history; BisectError for bad input."""
    try:
        git(repo, "rev-parse", "--git-dir")
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise BisectError(f"--repo {repo}: not a git repository") from None
    shas = {}
    for name, rev in (("--good", good), ("--bad", bad)):
        try:
            shas[name] = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        except subprocess.CalledProcessError:
            raise BisectError(f"{name} {rev!r}: unknown revision in {repo}") from None
    g, b = shas["--good"], shas["--bad"]
    if g == b:
        raise BisectError(f"--good {good!r} and --bad {bad!r} are the same commit ({g[:10]}): nothing to bisect")
    try:
        git(repo, "merge-base", "--is-ancestor", g, b)
    except subprocess.CalledProcessError:
        raise BisectError(f"--good {good!r} ({g[:10]}) is not an ancestor of --bad {bad!r} ({b[:10]}); "
                          "give the older, good revision as --good") from None
    lines = git(repo, "log", "--first-parent", "--reverse", "--format=%H%x00%s", f"{g}..{b}").splitlines()
    commits = [Commit(*ln.split("\0", 1)) for ln in lines]
    if not commits or git(repo, "rev-parse", f"{commits[0].sha}^").strip() != g:
        raise BisectError(f"--good {good!r} is not on the first-parent history of --bad {bad!r}")
    return [Commit(g, git(repo, "log", "-1", "--format=%s", g).strip()), *commits]


def diffstat(repo: str | os.PathLike, sha: str) -> str:
    return git(repo, "show", "--stat", "--format=", sha).strip("\n")


class Worktrees:
    """Detached worktrees of the user's repository under `root`; all removed on close (and the
    repository's worktree list pruned), whatever happened."""

    def __init__(self, repo: str | os.PathLike, root: str | os.PathLike):
        self.repo, self.root = Path(repo), Path(root)
        self.paths: list[Path] = []

    def add(self, commit: Commit) -> Path:
        path = self.root / commit.short
        if path not in self.paths:
            self.root.mkdir(parents=True, exist_ok=True)
            self.paths.append(path)
            git(self.repo, "worktree", "add", "--detach", "--quiet", str(path.resolve()), commit.sha)
        return path

    def close(self) -> None:
        for path in self.paths:
            try:
                git(self.repo, "worktree", "remove", "--force", str(path.resolve()))
            except subprocess.CalledProcessError:
                shutil.rmtree(path, ignore_errors=True)
        self.paths.clear()
        try:
            git(self.repo, "worktree", "prune")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Worktrees:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------- signals

class Interrupts:
    """SIGINT and SIGTERM, within this block, as one request to stop. The first raises
    KeyboardInterrupt (in the main thread); every later one is counted and nothing more, so the
    cleanup the first one started (trainers ended, worktrees removed, the record saved) runs to its
    end however often Ctrl-C is pressed. After `hold()` none is raised any more, only counted (the
    cleanup of a run that ended by itself, the printing of its result). `received` counts them all.
    The previous handlers come back at the end of the block; with `linger`, once a signal came,
    they are ignored instead, until the process exits (a command on its way out after Ctrl-C: a
    signal during its exit cannot turn exit status 130 into a traceback). Outside the main thread
    (where Python cannot set handlers) it changes nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, linger: bool = False) -> None:
        self.linger = linger
        self.received = 0
        self._raised = self._held = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received += 1
        if not (self._raised or self._held):
            self._raised = True
            raise KeyboardInterrupt

    def hold(self) -> None:
        self._held = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            if self.linger and self.received:
                old = signal.SIG_IGN
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()


# ------------------------------------------------------------------------------------ trainers

class TrainerProcess:
    """The one `perfkit.epochs` process holding the commits' trainers (see there why one)."""

    def __init__(self, spec: dict, log: Path, timeout: float = 300.0):
        self.spec, self.log, self.timeout = spec, log, timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._err = open(self.log, "a")  # noqa: SIM115 -- closed in close()
        # its own session: a Ctrl-C reaches the driver, which ends it itself
        self.proc = subprocess.Popen([sys.executable, "-m", "perfkit.epochs", json.dumps(self.spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
                                     start_new_session=True)

    def ask(self, **cmd) -> dict:
        """One command, its answer; CommitBroken for an error answer, an answer that is not one (the
        line read is named), or a process that died (it is started again at the next command: the
        trainers it held are gone). Interrupted while it waits (Ctrl-C), the process is ended at
        once: its answer may still come, and would be read as the next command's."""
        if self.proc is None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
            line = self.proc.stdout.readline() if ready else ""
        except OSError:
            line = ""
        except KeyboardInterrupt:
            self.close(kill=True)
            raise
        if not line:
            self.close()
            raise CommitBroken(f"the trainer process ended or stopped answering ({cmd['cmd']}): {self._tail()}")
        try:
            got = json.loads(line)
        except json.JSONDecodeError:
            got = None
        if not isinstance(got, dict):  # out of step with the protocol: nothing it says next can be trusted
            self.close(kill=True)
            raise CommitBroken(f"the trainer process answered {cmd['cmd']} with a line that is not a JSON answer: "
                               f"{line.strip()[:300]!r}; its log ends: {self._tail(300)}")
        if "error" in got:
            raise CommitBroken(got["error"])
        return got

    def _tail(self, chars: int = 600) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    def close(self, kill: bool = False) -> None:
        """Ask the process to quit (10 s, then it is killed); with `kill`, kill it and its group at once."""
        if self.proc is None:
            return
        if self.proc.poll() is None and not kill:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the group is its own
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self._err.close()
        self.proc = None


# ------------------------------------------------------------------------------------ evidence

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


# -------------------------------------------------------------------------------------- search

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


# -------------------------------------------------------------------------------------- driver

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
                 progress: Callable[[str], None] = lambda s: None, clock: Callable[[], float] = time.monotonic):
        self.repo, self.commits, self.spec, self.run_dir, self.opts = repo, commits, spec, Path(run_dir), opts
        self.record, self.progress, self.clock = record, progress, clock
        self.n = len(commits) - 1
        self.trainers = TrainerProcess(spec, self.run_dir / "logs" / "trainers.log")
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
            raise BisectError(f"--metric {self.opts.metric!r} is not reported by this env; it reports: "
                              f"{', '.join(sorted(got['learning'])) or 'nothing'} (or use --metric sps)")
        return float(got["learning"][self.opts.metric])

    def left(self) -> float:
        return 60 * self.opts.max_minutes - (self.clock() - self.start)

    def rounds(self, slots: list[tuple[str, list[float]]], enough: Callable[[], bool], cap: float) -> None:
        """Rounds over the (trainer key, values) slots in rotating order until `enough()` (after
        at least min_rounds) or `cap` seconds."""
        t0 = self.clock()
        for r in range(10_000):
            order = slots[r % len(slots):] + slots[:r % len(slots)]
            self.round_seed += 1
            for key, values in order:
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
