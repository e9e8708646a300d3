"""A compare record's rounds as blocks: per variant and round, the agent-steps, seconds, seconds
per phase and (when the compare was sampled) the folded stacks inside that block only.

Every block runs under a frame whose name carries the variant and the round (perfkit/core/markers.py),
so one profile of a whole process splits cleanly by block, and warm-up blocks, which carry a
different marker, are left out exactly as SPS leaves them out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perfkit.core.folded import read_folded
from perfkit.core.markers import block_slug, parse_marker
from perfkit.core.stats import steady_blocks


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


def merge_blocks(blocks: Sequence[Block]) -> Block:
    """Consecutive blocks of one variant as one: steps, seconds, phases and samples add up."""
    phases: dict[str, float] = defaultdict(float)
    stacks: dict[tuple[str, ...], float] = defaultdict(float)
    for blk in blocks:
        for k, v in blk.phases.items():
            phases[k] += v
        for k, v in (blk.stacks or {}).items():
            stacks[k] += v
    return Block(sum(b.agent_steps for b in blocks), sum(b.seconds for b in blocks), dict(phases), dict(stacks))


def read_stacks(path: str | None, base=None) -> dict[tuple[str, ...], float]:
    found = locate(path, base)
    if found is None or found.stat().st_size == 0:
        return {}
    return read_folded(found, torn_ok=True).stacks


def locate(path: str | None, base=None):
    """Where a sample file recorded as `path` is now. A relative `path` is under `base` (the
    record's directory). An absolute one (older records) is looked for first as the longest tail of
    it under `base`, so a results directory copied elsewhere reads its own files even while the
    original still exists (and may have been overwritten), then as itself. None if neither exists."""
    if not path:
        return None
    p = Path(path)
    if base is not None:
        parts = p.parts[1:] if p.is_absolute() else p.parts
        for i in range(len(parts)):
            cand = Path(base).joinpath(*parts[i:])
            if cand.is_file():
                return cand
    return p if p.exists() else None


def pairs_from_compare(result, a: str, b: str, base=None) -> list[tuple[Block, Block]]:
    """(A's block, B's block) per round of a compare record: its epochs when the variants shared a
    process (after the warm-up rounds), else its trials (steady windows), with the samples inside
    each block when the compare was sampled."""
    if result.blocked:
        split = split_by_block(read_stacks(result.sampler.get("folded"), base))
        sa, sb = block_slug(a), block_slug(b)
        out = []
        for blk in steady_blocks(result.blocks, result.warmup_rounds):
            phases = blk.get("phases", {})
            if a not in phases or b not in phases:
                continue
            r = blk["round"]
            out.append((Block(blk["agent_steps"][a], blk["seconds"][a], phases[a], split.get((sa, r))),
                        Block(blk["agent_steps"][b], blk["seconds"][b], phases[b], split.get((sb, r)))))
        return out
    ta = {t.round: t for t in result.ok_trials(a)}
    tb = {t.round: t for t in result.ok_trials(b)}
    return [(trial_block(ta[k], base), trial_block(tb[k], base)) for k in sorted(set(ta) & set(tb))]


def trial_block(t, base=None) -> Block:
    steady = t.steady_windows
    stacks = None
    if t.artifacts.get("folded"):  # every steady epoch of the trial, as one block
        parts = split_by_block(read_stacks(t.artifacts["folded"], base)).values()
        stacks = merge_blocks([Block(0, 0.0, {}, part) for part in parts]).stacks
    return Block(sum(w["agent_steps"] for w in steady), sum(w["seconds"] for w in steady), t.phases, stacks)
