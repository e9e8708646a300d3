"""SVG flamegraphs: one profile, or the difference of two drawn on either's shape.

Root at the top (an icicle graph: the wide frames a reviewer reads first are on screen without
scrolling), width = share of samples. In a differential graph a frame is red where B
spends a larger share than A and blue where smaller, the colour's strength following the size of
the change; hovering shows both shares. Plain SVG with <title> tooltips: opens in any browser.
"""

from __future__ import annotations

import hashlib
from html import escape

from perfkit.core.folded import Profile

WIDTH = 1200
ROW = 17
FONT = 12
CHAR_W = 7.0  # approximate glyph width at 12px monospace-ish fonts
PAD = 10
MIN_PX = 0.3


def _layout(tree: dict[tuple[str, ...], float]) -> list[tuple[tuple[str, ...], float, float]]:
    """(path, x0 share, width share) for every node, children left to right in name order."""
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for path in tree:
        children.setdefault(path[:-1], []).append(path)
    out = []

    def walk(parent: tuple[str, ...], x0: float) -> None:
        x = x0
        for path in sorted(children.get(parent, [])):
            w = tree[path]
            out.append((path, x, w))
            walk(path, x)
            x += w

    walk((), 0.0)
    return out


def _warm(name: str) -> str:
    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    return f"rgb({205 + h % 50},{(h >> 8) % 180 + 50},{(h >> 16) % 55})"


def _diff_colour(delta: float, scale: float) -> str:
    t = min(1.0, abs(delta) / scale) if scale > 0 else 0.0
    fade = int(235 - 175 * t)
    return f"rgb(255,{fade},{fade})" if delta > 0 else f"rgb({fade},{fade},255)" if delta < 0 else "rgb(235,235,235)"


def _svg(title: str, subtitle: str, nodes: list[tuple[tuple[str, ...], float, float, str, str]]) -> str:
    depth = max((len(p) for p, *_ in nodes), default=1)
    height = (depth + 3) * ROW + 2 * PAD
    inner = WIDTH - 2 * PAD
    parts = [
        (f'<?xml version="1.0" standalone="no"?>\n<svg version="1.1" xmlns="http://www.w3.org/2000/svg" '
         f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="monospace" '
         f'font-size="{FONT}">'),
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fdfdfd"/>',
        f'<text x="{WIDTH / 2}" y="{PAD + FONT}" text-anchor="middle" font-size="{FONT + 3}">{escape(title)}</text>',
        f'<text x="{WIDTH / 2}" y="{PAD + 2 * FONT + 4}" text-anchor="middle" fill="#555">{escape(subtitle)}</text>',
    ]
    for path, x0, w, colour, tip in nodes:
        px = w * inner
        if px < MIN_PX:
            continue
        x = PAD + x0 * inner
        y = PAD + 2 * FONT + 12 + (len(path) - 1) * ROW
        label = path[-1]
        fit = int((px - 6) / CHAR_W)
        text = label if len(label) <= fit else (label[: fit - 2] + ".." if fit > 3 else "")
        parts.append(
            f'<g><title>{escape(tip)}</title><rect x="{x:.2f}" y="{y}" width="{px:.2f}" height="{ROW - 1}" '
            f'fill="{colour}" rx="2"/>'
            + (f'<text x="{x + 3:.2f}" y="{y + ROW - 5}">{escape(text)}</text>' if text else "")
            + "</g>"
        )
    parts.append("</svg>\n")
    return "\n".join(parts)


def render_svg(profile: Profile, title: str) -> str:
    tree = profile.tree()
    nodes = [(p, x, w, _warm(p[-1]), f"{p[-1]} — {100 * w:.2f}% of {profile.total:g} samples")
             for p, x, w in _layout(tree)]
    return _svg(title, f"{profile.total:g} samples; width = share of samples", nodes)


def render_diff_svg(a: Profile, b: Profile, shape: str, title: str, label_a: str = "A", label_b: str = "B",
                    significant: set[str] | None = None) -> str:
    """Differential flamegraph drawn on `shape` ('a' or 'b'): colour = B's share minus A's share
    of the same stack path, both normalised by their own total samples. With `significant`, only
    frames of those names (and the paths through them) are coloured; the rest is grey."""
    ta, tb = a.tree(), b.tree()
    base = tb if shape == "b" else ta
    deltas = {p: tb.get(p, 0.0) - ta.get(p, 0.0) for p in base}
    if significant is not None:
        deltas = {p: d if any(f in significant for f in p) else 0.0 for p, d in deltas.items()}
    scale = max((abs(d) for d in deltas.values()), default=0.0)
    nodes = []
    for p, x, w in _layout(base):
        d = deltas[p]
        tip = (f"{p[-1]} — {label_a}: {100 * ta.get(p, 0.0):.2f}%, {label_b}: {100 * tb.get(p, 0.0):.2f}% "
               f"(change {100 * d:+.2f} points)")
        nodes.append((p, x, w, _diff_colour(d, scale), tip))
    drawn = label_b if shape == "b" else label_a
    sub = f"shape: {drawn}; red = larger share in {label_b}, blue = smaller; max change {100 * scale:.2f} points"
    return _svg(title, sub, nodes)
