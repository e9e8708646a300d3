"""Why is B slower than A: the gap in time per agent-step, split over phases and then functions,
each change with a paired 95% interval over rounds.

Inputs are *rounds*: in round k both variants ran a steady-state block (an epoch in one shared
process, or a trial in its own), and for each we know the agent-steps, the seconds, the seconds
per phase (perfkit's phase timers), and optionally the folded py-spy stacks sampled inside that
block only (see `marker_name`: every block runs under a frame whose name carries the variant and
the round, so one profile of a whole process splits cleanly by block, and warm-up blocks, which
carry a different marker, are left out exactly as SPS leaves them out).

A function's time in a block is its share of the block's samples times the block's seconds: the
sampler's real rate (which drops when it falls behind) does not enter. The paired differences
B - A over rounds give a t-interval; a function is listed as a cause only when its interval,
widened for the number of functions tested (Bonferroni), excludes zero. Everything else is noise,
summarised in one line.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.stats

from perfkit.timing import PHASES

MARKER_PREFIX = "perfkit_block__"
WARMUP_PREFIX = "perfkit_warmup__"
_MARKER = re.compile(r"^(perfkit_block|perfkit_warmup)__(.+)__r(\d+) \(")
# Frames that belong to start-up, not to the training loop: never a cause unless they recur in
# steady state (then they are inside a steady block's marker, and are reported like any other).
MIN_BLOCK_SAMPLES = 5


def marker_name(slug: str, round_: int, warmup: bool = False) -> str:
    """The frame name a block runs under: `perfkit_block__<slug>__r<k>` (a valid identifier)."""
    safe = re.sub(r"\W", "_", slug)
    return f"{WARMUP_PREFIX if warmup else MARKER_PREFIX}{safe}__r{round_}"


def parse_marker(frame: str) -> tuple[str, int, bool] | None:
    """(slug, round, warmup) of a marker frame as py-spy writes it (`name (file.py:12)`), else None."""
    m = _MARKER.match(frame)
    if m is None:
        return None
    return m.group(2), int(m.group(3)), m.group(1) == "perfkit_warmup"


def split_by_block(stacks: dict[tuple[str, ...], float]) -> dict[tuple[str, int], dict[tuple[str, ...], float]]:
    """Folded stacks -> {(slug, round): stacks below that block's marker frame} for steady blocks;
    samples outside any marker (start-up, imports, the orchestration) and in warm-up blocks are
    dropped."""
    out: dict[tuple[str, int], dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
    for stack, n in stacks.items():
        for i, frame in enumerate(stack):
            found = parse_marker(frame)
            if found is not None:
                slug, k, warm = found
                if not warm:
                    out[(slug, k)][stack[i + 1:] or ("(marker)",)] += n
                break
    return {k: dict(v) for k, v in out.items()}


@dataclass
class Block:
    """One variant's steady block in one round."""

    agent_steps: int
    seconds: float
    phases: dict[str, float]  # seconds per phase; they add up to `seconds`
    stacks: dict[tuple[str, ...], float] | None = None  # folded samples inside this block only

    def us_per_step(self, seconds: float) -> float:
        return 1e6 * seconds / self.agent_steps

    def frame_seconds(self) -> tuple[dict[str, float], dict[str, float]]:
        """(self, inclusive) seconds per frame name: share of the block's samples x its seconds."""
        if not self.stacks:
            return {}, {}
        total = sum(self.stacks.values())
        selfs: dict[str, float] = defaultdict(float)
        incl: dict[str, float] = defaultdict(float)
        for stack, n in self.stacks.items():
            selfs[stack[-1]] += n
            for name in set(stack):
                incl[name] += n
        scale = self.seconds / total
        return {k: v * scale for k, v in selfs.items()}, {k: v * scale for k, v in incl.items()}


@dataclass(frozen=True)
class Delta:
    """B - A in microseconds per agent-step, averaged over paired rounds, with its interval."""

    name: str
    a_us: float
    b_us: float
    delta_us: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def paired_delta(name: str, a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Delta:
    """Mean of b - a with a paired t-interval (NaN bounds with fewer than 2 pairs)."""
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    d = b_ - a_
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return Delta(name, float(a_.mean()) if n else math.nan, float(b_.mean()) if n else math.nan, mean,
                     math.nan, math.nan, n)
    sd = float(d.std(ddof=1))
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Delta(name, float(a_.mean()), float(b_.mean()), mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class FrameChange:
    frame: str
    self_: Delta  # time with the frame as the leaf
    inclusive: Delta  # time with the frame anywhere on the stack


@dataclass
class Explanation:
    """What `perfkit explain` found for one pair of variants."""

    a: str
    b: str
    rounds: int
    ratio: float  # SPS of B over SPS of A (geo-mean of paired ratios)
    ratio_ci: tuple[float, float]
    gap: Delta  # time per agent-step, B - A
    phases: list[Delta]
    causes: list[FrameChange] = field(default_factory=list)  # significant self-time changes, largest first
    frames_tested: int = 0
    profiled_rounds: int = 0
    samples: dict[str, float] = field(default_factory=dict)  # label -> samples inside steady blocks
    notes: list[str] = field(default_factory=list)

    @property
    def closure(self) -> float:
        """Sum of the significant phase deltas over the gap (1.0: the phases account for all of it)."""
        total = sum(p.delta_us for p in self.phases if p.significant)
        return total / self.gap.delta_us if self.gap.delta_us else math.nan

    @property
    def explained_by_causes(self) -> float:
        """Share of the gap that the listed functions' self-time changes account for."""
        total = sum(c.self_.delta_us for c in self.causes)
        return total / self.gap.delta_us if self.gap.delta_us else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["causes"] = [{"frame": c.frame, "self": asdict(c.self_), "inclusive": asdict(c.inclusive)}
                       for c in self.causes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Explanation:
        return cls(
            a=d["a"], b=d["b"], rounds=d["rounds"], ratio=d["ratio"], ratio_ci=tuple(d["ratio_ci"]),
            gap=Delta(**d["gap"]), phases=[Delta(**p) for p in d["phases"]],
            causes=[FrameChange(c["frame"], Delta(**c["self"]), Delta(**c["inclusive"])) for c in d["causes"]],
            frames_tested=d.get("frames_tested", 0), profiled_rounds=d.get("profiled_rounds", 0),
            samples=d.get("samples", {}), notes=d.get("notes", []))


def explain(a_label: str, b_label: str, pairs: Iterable[tuple[Block, Block]], confidence: float = 0.95,
            max_causes: int = 10) -> Explanation:
    """Explain B against A from paired rounds of (A's block, B's block)."""
    from perfkit import stats

    pairs = [(a, b) for a, b in pairs if a.agent_steps > 0 and b.agent_steps > 0 and a.seconds > 0 and b.seconds > 0]
    ta = [a.us_per_step(a.seconds) for a, _ in pairs]
    tb = [b.us_per_step(b.seconds) for _, b in pairs]
    gap = paired_delta("time per agent-step", ta, tb, confidence)
    c = stats.compare_log_ratios([math.log(x / y) for x, y in zip(ta, tb, strict=True)], confidence)
    phase_names = [p for p in PHASES if any(a.phases.get(p) or b.phases.get(p) for a, b in pairs)]
    phases = [paired_delta(p, [a.us_per_step(a.phases.get(p, 0.0)) for a, _ in pairs],
                           [b.us_per_step(b.phases.get(p, 0.0)) for _, b in pairs], confidence) for p in phase_names]
    ex = Explanation(a_label, b_label, len(pairs), c.ratio, (c.ci_low, c.ci_high), gap, phases)

    profiled = [(a, b) for a, b in pairs if a.stacks and b.stacks
                and min(sum(a.stacks.values()), sum(b.stacks.values())) >= MIN_BLOCK_SAMPLES]
    ex.profiled_rounds = len(profiled)
    ex.samples = {a_label: sum(sum(a.stacks.values()) for a, _ in profiled),
                  b_label: sum(sum(b.stacks.values()) for _, b in profiled)}
    if len(profiled) < 2:
        if pairs:
            ex.notes.append("functions: fewer than 2 profiled rounds, so no function can be named with an interval")
        return ex
    per_round = [(a.frame_seconds(), b.frame_seconds(), a, b) for a, b in profiled]
    frames = sorted({f for (sa, _), (sb, _), _, _ in per_round for f in (*sa, *sb)})
    ex.frames_tested = len(frames)
    # Bonferroni over the frames tested: with hundreds of frames, a 95% interval per frame would
    # name a few "causes" in every comparison of identical code.
    level = 1 - (1 - confidence) / max(1, len(frames))
    changes = []
    for f in frames:
        s = paired_delta(f, [a.us_per_step(sa.get(f, 0.0)) for (sa, _), _, a, _ in per_round],
                         [b.us_per_step(sb.get(f, 0.0)) for _, (sb, _), _, b in per_round], level)
        if s.significant:
            i = paired_delta(f, [a.us_per_step(ia.get(f, 0.0)) for (_, ia), _, a, _ in per_round],
                             [b.us_per_step(ib.get(f, 0.0)) for _, (_, ib), _, b in per_round], level)
            changes.append(FrameChange(f, s, i))
    changes.sort(key=lambda ch: -abs(ch.self_.delta_us))
    ex.causes = changes[:max_causes]
    return ex


def summary(ex: Explanation) -> str:
    """One paragraph a person can paste into a PR."""
    pct = (1 / ex.ratio - 1) * 100 if ex.ratio and not math.isnan(ex.ratio) else math.nan
    lo, hi = ex.ratio_ci
    if math.isnan(lo):
        speed = f"{ex.b} runs at {ex.ratio:.3f}x the speed of {ex.a} (too few rounds for an interval)"
    elif hi < 1:
        speed = (f"{ex.b} is {pct:.1f}% slower than {ex.a} [{(1 / hi - 1) * 100:.1f}, {(1 / lo - 1) * 100:.1f}]")
    elif lo > 1:
        speed = (f"{ex.b} is {-pct:.1f}% faster than {ex.a} [{(1 - 1 / lo) * 100:.1f}, {(1 - 1 / hi) * 100:.1f}]")
    else:
        speed = f"{ex.b} and {ex.a} run at the same speed within noise (ratio {ex.ratio:.3f} [{lo:.3f}, {hi:.3f}])"
    parts = [f"{speed}: {_signed(ex.gap.delta_us)} µs per agent-step"]
    moved = sorted((p for p in ex.phases if p.significant), key=lambda p: -abs(p.delta_us))
    if moved:
        parts.append(", of which " + ", ".join(f"{p.name} {_signed(p.delta_us)} [{p.ci_low:.2f}, {p.ci_high:.2f}]"
                                                for p in moved[:3]))
    else:
        parts.append("; no phase changed beyond noise")
    text = "".join(parts)
    if ex.causes:
        top = ex.causes[0]
        share = top.self_.delta_us / ex.gap.delta_us if ex.gap.delta_us else math.nan
        text += (f"; the largest function change is `{top.frame}` {_signed(top.self_.delta_us)} µs "
                 f"[{top.self_.ci_low:.2f}, {top.self_.ci_high:.2f}]"
                 + (f" ({share:.0%} of the gap)" if not math.isnan(share) and 0 < share < 10 else ""))
    elif ex.frames_tested:
        text += f"; none of the {ex.frames_tested} functions sampled changed beyond noise"
    return text + "."


def _signed(x: float) -> str:
    return f"{x:+.2f}"
