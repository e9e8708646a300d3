"""Marker frames: run a block of work under a Python frame whose *name* says which block it is, so a
sampling profiler's stacks (py-spy reads each frame's code name) split cleanly by block afterwards.

`perfkit_block__<slug>__r<k>` marks a steady-state block (variant `slug`, round `k`) and
`perfkit_warmup__...` a warm-up block: the samples of one profile of a whole process, in which
several variants' epochs interleave, separate by variant and round, and warm-up samples are left
out exactly as SPS leaves them out. The cost is one extra Python call per block.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from typing import Any

BLOCK, WARMUP = "perfkit_block", "perfkit_warmup"
_FRAME = re.compile(rf"^({BLOCK}|{WARMUP})__(.+)__r(\d+)(?: \(|$)")
_CACHE: dict[str, Callable[..., Any]] = {}


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def block_slug(label: str) -> str:
    """A variant label as it appears in its blocks' frame names (a valid identifier)."""
    return re.sub(r"\W", "_", label)


def marker_name(label: str, round_: int, warmup: bool = False) -> str:
    """The frame name of a block of the variant `label` in round `round_`."""
    return f"{WARMUP if warmup else BLOCK}__{block_slug(label)}__r{round_}"


def call_marked(name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)`, called from a frame named `name`."""
    marked = _CACHE.get(name)
    if marked is None:
        code = _call.__code__.replace(co_name=name, co_qualname=name)
        marked = _CACHE[name] = types.FunctionType(code, _call.__globals__, name)
    return marked(fn, *args, **kwargs)


def parse_marker(frame: str) -> tuple[str, int, bool] | None:
    """(slug, round, warmup) of a marker frame as a profiler writes it (`name (file.py:12)` or
    `name`), else None."""
    m = _FRAME.match(frame)
    if m is None:
        return None
    return m.group(2), int(m.group(3)), m.group(1) == WARMUP
