"""`perfkit bisect` as text: the outcome, the first bad commit with its diffstat, the evidence table."""

from __future__ import annotations

import math

from tabulate import tabulate

from perfkit.records.bisection import BisectRecord


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    return "–" if math.isnan(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _commit(rec: BisectRecord, i: int) -> str:
    c = rec.commits[i]
    return f"{c['sha'][:10]} {c['subject']!r} ({i}/{len(rec.commits) - 1})"


def headline(rec: BisectRecord) -> str:
    o = rec.outcome
    kind, cps = o.get("outcome"), o.get("change_points", [])
    what = "SPS" if rec.metric == "sps" else rec.metric
    took = f"{len(rec.steps)} commits tested in {rec.seconds / 60:.1f} min"
    if kind == "found":
        return f"First bad commit ({what}): {_commit(rec, cps[0])}; {took}."
    if kind == "two-changes":
        return (f"Two change points ({what}), not one: {_commit(rec, cps[0])} made it worse than the bad end, and "
                f"{_commit(rec, cps[1])} gave part of it back; {took}.")
    if kind == "range":
        return (f"The first bad commit ({what}) is one of: " + ", ".join(_commit(rec, i) for i in o["candidates"])
                + f" ({o['why']}); {took}.")
    if kind == "inconsistent":
        first = (f"{_commit(rec, cps[0])} made it slower than the bad end; the change after it is one of: "
                 if cps else "commits involved: ")
        return (f"Inconsistent evidence ({what}): {o['why']}. {first[0].upper() + first[1:]}"
                + ", ".join(_commit(rec, i) for i in o.get("candidates", o.get("commits", [])))
                + f"; no single culprit is claimed; {took}.")
    if kind == "no-regression":
        return f"No regression to bisect: {o['why']} (bad/good {_ends(rec)}); {took}."
    if kind == "incomplete":
        return (f"Stopped before the end ({o['why']}): the first bad commit is one of {len(o['candidates'])} "
                f"commits from {_commit(rec, o['candidates'][0])}; {took}.")
    if kind == "interrupted":
        return f"Interrupted; {took}; the steps so far are below."
    return f"{kind}; {took}."


def _verdict(s) -> str:
    """In the second search a commit is read against the commit found past the bad end."""
    if s.search != "second":
        return s.verdict
    return {"good": "past bad (2nd search)", "bad": "at bad (2nd search)"}.get(s.verdict, s.verdict + " (2nd search)")


def _ends(rec: BisectRecord) -> str:
    e = rec.ends
    if not e:
        return "not measured"
    d, (lo, hi) = e["delta"], e["ci"]
    if rec.metric == "sps":
        return f"{math.exp(d):.3f} {_ci(math.exp(lo), math.exp(hi))}, {e['rounds']} rounds"
    return f"{d:+.3f} {_ci(lo, hi)}, {e['rounds']} rounds"


def render_bisect(rec: BisectRecord, fmt: str = "github") -> str:
    parts = [headline(rec)]
    if rec.ends:
        parts.append(f"The ends: bad against good {_ends(rec)} "
                     f"({'SPS ratio' if rec.metric == 'sps' else rec.metric + ', bad minus good'}).")
    for sha, stat in rec.outcome.get("diffstat", {}).items():
        parts.append(f"{sha[:10]}:\n{stat}")
    if rec.steps:
        ratio = "SPS to good" if rec.metric == "sps" else f"{rec.metric} − good"
        rows = [[k + 1, s.sha[:10], s.subject[:40], f"{s.index}/{len(rec.commits) - 1}",
                 f"{s.to_good:.3f}" if not math.isnan(s.to_good) else "–", _ci(*s.to_good_ci),
                 f"{s.level:.2f}" if not math.isnan(s.level) else "–", _ci(*s.level_ci, 2), s.rounds,
                 f"{s.seconds:.0f}", _verdict(s)]
                for k, s in enumerate(rec.steps)]
        parts.append(tabulate(rows, headers=["step", "commit", "subject", "index", ratio, "95% CI",
                                             "level (0 good, 1 bad)", "95% CI", "rounds", "s", "verdict"],
                              tablefmt=fmt, disable_numparse=True))
    skipped = [s for s in rec.steps if s.verdict == "skip"]
    parts += [f"skipped {s.sha[:10]}: {s.error}" for s in skipped]
    return "\n\n".join(parts)
