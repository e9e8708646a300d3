"""Why is B slower than A: the gap in time per agent-step, split over phases and then functions,
each change with a paired 95% interval over rounds.

Inputs are *rounds*: in round k both variants ran a steady-state block (an epoch in one shared
process, or a trial in its own), and for each we know the agent-steps, the seconds, the seconds
per phase (perfkit's phase timers), and optionally the folded py-spy stacks sampled inside that
block only (see `marker_name`: every block runs under a frame whose name carries the variant and
the round, so one profile of a whole process splits cleanly by block, and warm-up blocks, which
carry a different marker, are left out exactly as SPS leaves them out: perfkit/core/markers.py).

A function's time in a block is its share of the block's samples times the block's seconds: the
sampler's real rate (which drops when it falls behind) does not enter. The paired differences
B - A over rounds give a t-interval; a function is listed as a cause only when its interval,
widened for the number of functions tested (Bonferroni), excludes zero. Everything else is noise,
summarised in one line.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from perfkit.core.markers import block_slug
from perfkit.core.timing import PHASES
from perfkit.records.blocks import Block, merge_blocks, pairs_from_compare
from perfkit.records.explain import Delta, Explanation, FrameChange

# Function times are compared over batches of consecutive rounds holding at least this many samples
# per variant: a 0.2 s epoch sampled at 100 Hz holds ~20, too few on its own for a small frame.
MIN_BATCH_SAMPLES = 40
# A frame in at least this share of the time (the training loop, run_epoch) is not tested inclusively.
UBIQUITOUS = 0.9


def paired_delta(name: str, a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Delta:
    """Mean of b - a with a paired t-interval (NaN bounds with fewer than 2 pairs)."""
    from perfkit.core.stats import mean_interval

    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    mean, lo, hi = mean_interval(b_ - a_, confidence)
    n = len(a_)
    return Delta(name, float(a_.mean()) if n else math.nan, float(b_.mean()) if n else math.nan, mean, lo, hi, n)


def explain(a_label: str, b_label: str, pairs: Iterable[tuple[Block, Block]], confidence: float = 0.95,
            max_causes: int = 10, function_confidence: float = 0.99, min_share: float = 0.005) -> Explanation:
    """Explain B against A from paired rounds of (A's block, B's block). A function is a cause when
    its self-time change's interval (at `function_confidence` for the whole family of functions
    tested, Bonferroni) excludes zero and the change is at least `min_share` of A's time per
    agent-step: a 0.1% wobble in one of hundreds of frames is not why B is slower."""
    from perfkit.core import stats

    pairs = [(a, b) for a, b in pairs if a.agent_steps > 0 and b.agent_steps > 0 and a.seconds > 0 and b.seconds > 0]
    ta = [a.us_per_step(a.seconds) for a, _ in pairs]
    tb = [b.us_per_step(b.seconds) for _, b in pairs]
    gap = paired_delta("time per agent-step", ta, tb, confidence)
    c = stats.compare_log_ratios([math.log(x / y) for x, y in zip(ta, tb, strict=True)], confidence)
    phase_names = [p for p in PHASES if any(a.phases.get(p) or b.phases.get(p) for a, b in pairs)]
    phases = [paired_delta(p, [a.us_per_step(a.phases.get(p, 0.0)) for a, _ in pairs],
                           [b.us_per_step(b.phases.get(p, 0.0)) for _, b in pairs], confidence) for p in phase_names]
    ex = Explanation(a_label, b_label, len(pairs), c.ratio, (c.ci_low, c.ci_high), gap, phases)

    sampled = [(a, b) for a, b in pairs if a.stacks and b.stacks]
    ex.samples = {a_label: float(sum(sum(a.stacks.values()) for a, _ in sampled)),
                  b_label: float(sum(sum(b.stacks.values()) for _, b in sampled))}
    profiled = batch_pairs(sampled)
    ex.batches = len(profiled)
    if not sampled and pairs:
        ex.notes.append("functions: these rounds were not sampled; `perfkit explain --vary ...` (or compare "
                        "--flamegraph) samples every block")
        return ex
    if len(profiled) < 2:
        if pairs:
            ex.notes.append(f"functions: fewer than 2 batches of rounds with {MIN_BATCH_SAMPLES} samples each, so no "
                            "function can be named with an interval (sample faster with --rate, or run longer)")
        return ex
    per_round = [(a.frame_seconds(), b.frame_seconds(), a, b) for a, b in profiled]
    frames = sorted({f for (sa, _), (sb, _), _, _ in per_round for f in (*sa, *sb)})
    # Inclusive time is tested too, for costs spread over many small callees (a checkpoint is
    # hundreds of serialisation frames, none big alone), but not for frames on nearly every stack
    # (the loop itself, run_epoch): their inclusive change is the whole gap and names nothing.
    total = sum(blk.seconds for a, b in profiled for blk in (a, b))
    on_stack = defaultdict(float)
    for (_, ia), (_, ib), _, _ in per_round:
        for f, secs in (*ia.items(), *ib.items()):
            on_stack[f] += secs / total
    spread = sorted(f for f, share in on_stack.items() if share < UBIQUITOUS)
    ex.frames_tested = len(frames) + len(spread)
    # Bonferroni over every test: with hundreds of frames, a 95% interval per frame would name a
    # few "causes" in every comparison of identical code.
    level = 1 - (1 - function_confidence) / max(1, ex.frames_tested)
    floor = min_share * gap.a_us

    def delta(f: str, which: int) -> Delta:
        return paired_delta(f, [a.us_per_step(fa[which].get(f, 0.0)) for fa, _, a, _ in per_round],
                            [b.us_per_step(fb[which].get(f, 0.0)) for _, fb, _, b in per_round], level)

    changes = []
    for f in frames:
        s = delta(f, 0)
        if s.significant and abs(s.delta_us) >= floor:
            changes.append(FrameChange(f, s, delta(f, 1)))
    changes.sort(key=lambda ch: -abs(ch.self_.delta_us))
    if not changes:  # no single frame moved: look for the caller that holds a spread-out change
        for f in spread:
            i = delta(f, 1)
            if i.significant and abs(i.delta_us) >= floor:
                changes.append(FrameChange(f, delta(f, 0), i, by="inclusive"))
        changes.sort(key=lambda ch: -abs(ch.inclusive.delta_us))
    ex.causes = changes[:max_causes]
    blocks_a, blocks_b = [a for a, _ in profiled], [b for _, b in profiled]
    ex.causes = [dataclasses.replace(c, via=caller_outside_libraries(c.frame, blocks_b, blocks_a)) for c in ex.causes]
    return ex


def _package(frame: str) -> str | None:
    """Top-level package of a normalised frame `name (pkg/mod.py)`: `pkg` (or the module file)."""
    if not frame.endswith(")") or " (" not in frame:
        return None
    path = frame[frame.rindex(" (") + 2:-1]
    return path.split("/", 1)[0].removesuffix(".py")


def is_library(frame: str) -> bool:
    """A frame of the stdlib or of an installed third-party package (numpy, torch, pufferlib ...),
    not of the code under test (perfkit, its envs, or a user's module on the path)."""
    import sys

    pkg = _package(frame)
    if pkg is None:
        return False
    if pkg.startswith("<frozen") or pkg in sys.stdlib_module_names:
        return True
    return pkg in _third_party()


def _third_party() -> set[str]:
    global _THIRD_PARTY
    if _THIRD_PARTY is None:
        from importlib.metadata import packages_distributions

        _THIRD_PARTY = set(packages_distributions()) - {"perfkit", "envs", "bench", "tests"}
    return _THIRD_PARTY


_THIRD_PARTY: set[str] | None = None


def caller_outside_libraries(frame: str, blocks_b: Sequence[Block], blocks_a: Sequence[Block] = ()) -> str | None:
    """For a cause in library code (numpy's `_all`), the caller that pulls in its change: the
    nearest frame above it outside libraries, whose share of samples through `frame` grew most from
    A to B (from B alone without A). None when the cause is not library code."""
    if not is_library(frame):
        return None
    votes: dict[str, float] = defaultdict(float)
    for blocks, sign in ((blocks_b, 1.0), (blocks_a, -1.0)):
        total = sum(sum((blk.stacks or {}).values()) for blk in blocks) or 1.0
        for blk in blocks:
            for stack, n in (blk.stacks or {}).items():
                if stack and stack[-1] == frame:
                    caller = next((f for f in reversed(stack[:-1]) if not is_library(f)), None)
                    if caller is not None:
                        votes[caller] += sign * n / total
    return max(votes, key=votes.get) if votes else None


def batch_pairs(pairs: Sequence[tuple[Block, Block]], min_samples: int = MIN_BATCH_SAMPLES
                ) -> list[tuple[Block, Block]]:
    """Pairs of consecutive rounds merged into batches of equal length, long enough that every
    batch holds `min_samples` samples per variant (judged by the median round); a trailing partial
    batch is dropped so every batch weighs the same."""
    if not pairs:
        return []
    per_round = sorted(min(sum(a.stacks.values()), sum(b.stacks.values())) for a, b in pairs)
    typical = per_round[len(per_round) // 2]
    if typical <= 0:
        return []
    size = max(1, math.ceil(min_samples / typical))
    return [(merge_blocks([a for a, _ in pairs[i:i + size]]), merge_blocks([b for _, b in pairs[i:i + size]]))
            for i in range(0, len(pairs) - size + 1, size)]


def explain_compare(result, a: str | None = None, b: str | None = None, base=None) -> list[Explanation]:
    """Every variant against the reference (the first), or just `b` against `a`. `base`: the
    record's directory, where its sample files are looked for when the recorded paths moved."""
    a = a or result.variants[0]
    others = [b] if b else [v for v in result.variants if v != a]
    learning = {s.label: {k: v for k, v in (s.learning or {}).items() if k in LEARNING_KEYS}
                for s in result.summaries()}
    out = []
    for other in others:
        ex = explain(a, other, pairs_from_compare(result, a, other, base))
        ex.learning = {label: learning[label] for label in (a, other) if learning.get(label)}
        out.append(ex)
    return out


# Shown next to the speed: a faster variant that stopped learning is no fix.
LEARNING_KEYS = ("episode_return", "heart.get", "episodes")


def write_explain(result, run_dir, a: str | None = None, b: str | None = None, out_dir=None):
    """Explain a compare record (read from `run_dir`, with its sample files), draw a differential
    flamegraph per explained variant coloured only where a function changed beyond noise, and save
    explain.json, all into `out_dir` (default: `run_dir`)."""
    from pathlib import Path

    from perfkit.core.folded import Profile
    from perfkit.engine.gpu import summarise_dir
    from perfkit.records.explain import ExplainRecord
    from perfkit.render.flame_report import write_flamediff

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    explanations = explain_compare(result, a, b, run_dir)
    flamegraphs = {}
    for ex in explanations:
        pairs = pairs_from_compare(result, ex.a, ex.b, run_dir)
        pa, pb = merge_blocks([x for x, _ in pairs]).stacks, merge_blocks([y for _, y in pairs]).stacks
        if pa and pb:
            files, _ = write_flamediff(Profile(pa), Profile(pb), out_dir, ex.a, ex.b,
                                       stem=f"explain-{block_slug(ex.b)}",
                                       significant={c.frame for c in ex.causes})
            flamegraphs[ex.b] = files
    gpu, gpu_notes = summarise_dir(run_dir, sorted({x for ex in explanations for x in (ex.a, ex.b)}))
    compare = "sps.json" if out_dir.resolve() == run_dir.resolve() else str((run_dir / "sps.json").resolve())
    record = ExplainRecord(explanations, compare, dict(result.sampler), flamegraphs, gpu, gpu_notes)
    record.save(out_dir / "explain.json")
    return record
