"""Folded-stack profiles (`frame;frame;frame COUNT` per line, root first), as py-spy's raw
format and torch.profiler's `export_stacks` write them.

Frames are normalised so two runs of the same code line up: line numbers are dropped
(`train (perfkit/train/ppo.py:160)` -> `train (perfkit/train/ppo.py)`) and py-spy's process
frames (`process 1234:"python -m ..."`, a worker's nested under its parent's) become one root
frame, `process main` or `process worker-N` (ranked by PID), so each worker's stacks stay
attributed to it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r":\d+\)$")  # py-spy: `name (file.py:12)`
_TORCH_LINE = re.compile(r"\(\d+\):")  # torch.profiler: `file.py(12):_name`
_ADDRESS = re.compile(r"_at_0x[0-9a-f]+")  # object addresses differ run to run
_PROCESS = re.compile(r"^process (\d+):")
NO_FRAMES = "(no frames)"  # samples a sampler wrote without a stack (a torn read)
TRAIN_LOOP = "train (perfkit/train/ppo.py)"  # the frame differential flamegraphs focus on (leaves out start-up)


class FoldedError(ValueError):
    """A folded-stack file could not be parsed; the message names the file and line."""


@dataclass
class Profile:
    """Sample counts per full stack (tuple of frames, root first)."""

    stacks: dict[tuple[str, ...], float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.stacks.values())

    def inclusive(self) -> dict[str, float]:
        """Share of samples in which each frame name appears (counted once per sample)."""
        out: dict[str, float] = defaultdict(float)
        for stack, n in self.stacks.items():
            for name in set(stack):
                out[name] += n
        return _normalise(out, self.total)

    def self_share(self) -> dict[str, float]:
        """Share of samples in which each frame name is the leaf."""
        out: dict[str, float] = defaultdict(float)
        for stack, n in self.stacks.items():
            out[stack[-1]] += n
        return _normalise(out, self.total)

    def focus(self, frame: str) -> Profile:
        """Only the samples with a frame containing `frame`, re-rooted at its first occurrence
        (e.g. the training loop, leaving out start-up imports that differ run to run)."""
        out: dict[tuple[str, ...], float] = defaultdict(float)
        for stack, n in self.stacks.items():
            for i, f in enumerate(stack):
                if frame in f:
                    out[stack[i:]] += n
                    break
        return Profile(dict(out))

    def tree(self) -> dict[tuple[str, ...], float]:
        """Share of samples under each path prefix: what a flamegraph draws."""
        out: dict[tuple[str, ...], float] = defaultdict(float)
        for stack, n in self.stacks.items():
            for i in range(1, len(stack) + 1):
                out[stack[:i]] += n
        return _normalise(out, self.total)


def _normalise(d: dict, total: float) -> dict:
    return {k: v / total for k, v in d.items()} if total else {}


def normalise_frame(frame: str) -> str:
    frame = _ADDRESS.sub("", frame.strip())
    return _TORCH_LINE.sub(":", _LINE.sub(")", frame))


def parse_folded(text: str, source: str = "<text>", torn_ok: bool = False) -> Profile:
    """Folded stacks -> Profile; FoldedError naming the line that is not `frame;frame COUNT`.
    `torn_ok`: for py-spy's own output with --nonblocking, which reads a running process without
    stopping it and can, rarely, read a frame name torn mid-update (even one holding a newline):
    such lines are dropped, not fatal (the piece after the newline has no marker frame, so explain
    leaves it out with the other samples outside any block)."""
    raw: dict[tuple[str, ...], float] = defaultdict(float)
    for i, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        try:
            n = float(count)
        except ValueError:
            if torn_ok:
                continue
            raise FoldedError(f"{source}:{i}: expected 'frame;frame COUNT', got {line[:80]!r}") from None
        if not (math.isfinite(n) and n >= 0):  # a negative or NaN count makes shares beyond 0..100%
            raise FoldedError(f"{source}:{i}: sample count {count!r} must be a finite number >= 0")
        if not stack:  # py-spy --nonblocking writes ` N` for samples whose stack it could not read
            raw[(NO_FRAMES,)] += n
            continue
        raw[tuple(normalise_frame(f) for f in stack.split(";"))] += n
    return Profile(_name_processes(raw))


def _name_processes(raw: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
    """py-spy --subprocesses roots every stack at `process PID:"cmd"` and nests a child's stack
    under its parent's process frame. Keep only the innermost process frame, named `process main`
    for the root process and `process worker-N` for the others (by PID)."""
    roots, others = set(), set()
    for frames in raw:
        pids = [int(m.group(1)) for m in map(_PROCESS.match, frames) if m]
        if pids:
            roots.add(pids[0])
            others.update(pids[1:])
    names = {pid: "process main" for pid in roots}
    names.update({pid: f"process worker-{k}" for k, pid in enumerate(sorted(others - roots), 1)})
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for frames, n in raw.items():
        last = max((i for i, f in enumerate(frames) if _PROCESS.match(f)), default=None)
        if last is not None:
            pid = int(_PROCESS.match(frames[last]).group(1))
            frames = (names[pid], *frames[last + 1:])
        out[frames] += n
    return dict(out)


def read_folded(path: str | Path, torn_ok: bool = False) -> Profile:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FoldedError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise FoldedError(f"{path}:{line}: not a text folded-stack file (byte {e.start} is not UTF-8)") from None
    return parse_folded(text, str(path), torn_ok)


@dataclass(frozen=True)
class FrameDelta:
    frame: str
    inclusive_a: float
    inclusive_b: float
    self_a: float
    self_b: float

    @property
    def inclusive_delta(self) -> float:
        return self.inclusive_b - self.inclusive_a

    @property
    def self_delta(self) -> float:
        return self.self_b - self.self_a


def diff_frames(a: Profile, b: Profile, top: int = 15) -> list[FrameDelta]:
    """Frames whose share changed most from A to B (largest |self change|, then |inclusive|).

    Shares are fractions of each run's own samples, so a faster run is not "all red"."""
    ia, ib, sa, sb = a.inclusive(), b.inclusive(), a.self_share(), b.self_share()
    rows = [FrameDelta(f, ia.get(f, 0.0), ib.get(f, 0.0), sa.get(f, 0.0), sb.get(f, 0.0)) for f in set(ia) | set(ib)]
    rows.sort(key=lambda d: (-abs(d.self_delta), -abs(d.inclusive_delta), d.frame))
    return rows[:top]


def to_folded(profile: Profile) -> str:
    return "".join(f"{';'.join(s)} {n:g}\n" for s, n in sorted(profile.stacks.items()))


def to_speedscope(profile: Profile, name: str) -> dict:
    """The speedscope 'sampled' file format: frames table + one stack of frame indices per sample."""
    frames: list[str] = []
    index: dict[str, int] = {}
    samples, weights = [], []
    for stack, n in profile.stacks.items():
        ids = []
        for f in stack:
            if f not in index:
                index[f] = len(frames)
                frames.append(f)
            ids.append(index[f])
        samples.append(ids)
        weights.append(n)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": f} for f in frames]},
        "profiles": [{"type": "sampled", "name": name, "unit": "none", "startValue": 0,
                      "endValue": sum(weights), "samples": samples, "weights": weights}],
        "name": name,
        "exporter": "perfkit",
    }
