"""Does `perfkit bisect` find the commit that made a user's env slower, despite noise?

    python bench/bisect_power.py --repos 10 --nonmono 1

Generates throwaway git repositories of a small user env module (the forage env of
bench/userenvs, copied in, so each repository stands alone), 64 commits each. Every commit edits the
module; commit k (drawn per repository) adds a hidden per-step cost worth about 5% of SPS
(`--cost-us` microseconds per env step in `_reconcile_ledger`). The non-monotonic variant: commit k
adds twice that (about 10%) and commit k+10 removes half of it. Runs `perfkit bisect` on each (a
fresh process, default rule) and prints: repository, true k, found k, commits tested, minutes,
correct?, and the measured slowdown between the ends. A non-monotonic repository is correct when
both change points are reported, or a clear "inconsistent" naming the commits; a single culprit
stated as certain is wrong there even when it is k.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORAGE = ROOT / "bench" / "userenvs" / "forage.py"

MODULE = '''"""A user's env: the forage env, with a release number that every commit bumps."""

from forage_core import Forage

RELEASE = {release}
COST_US = {cost}  # per env step, in _reconcile_ledger


def make(buf=None, seed=0):
    return Forage(buf=buf, seed=seed, cost_us=COST_US)
'''


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def make_repo(path: Path, n: int, costs: dict[int, float], broken: tuple[int, ...] = ()) -> list[str]:
    """A repository of n + 1 commits (0 is the good end): `userenv.py` changes in every commit;
    from commit k on, COST_US is costs[k] (the latest k <= commit). Commits in `broken` do not
    import. Returns the shas, oldest first."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    shutil.copy(FORAGE, path / "forage_core.py")
    shas, cost = [], 0.0
    for i in range(n + 1):
        cost = costs.get(i, cost)
        text = MODULE.format(release=i, cost=cost)
        if i in broken:
            text = text.replace("from forage_core import Forage", "from forage_core import Forage, Missing")
        (path / "userenv.py").write_text(text)
        _git(path, "add", "-A")
        subject = f"release {i}: " + ("reconcile the ledger every step" if i in costs and i > 0 else "tidy up")
        _git(path, "commit", "-q", "-m", subject)
        shas.append(_git(path, "rev-parse", "HEAD").strip())
    return shas


def run_one(repo: Path, shas: list[str], out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "perfkit", "bisect", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1],
           "--env", "userenv:make", "--out", str(out), "--force", "--max-minutes", str(args.max_minutes)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    minutes = (time.monotonic() - t0) / 60
    if proc.returncode != 0 or not (out / "bisect.json").exists():
        return {"error": (proc.stderr or proc.stdout)[-800:], "minutes": minutes}
    rec = json.loads((out / "bisect.json").read_text())
    o = rec["outcome"]
    ends = rec.get("ends") or {}
    return {"outcome": o["outcome"], "found": o.get("change_points", []), "candidates": o.get("candidates", []),
            "tested": len(rec["steps"]), "minutes": minutes,
            "ends_ratio": math.exp(ends["delta"]) if ends else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", type=int, default=10, help="5%% repositories")
    ap.add_argument("--nonmono", type=int, default=1, help="non-monotonic repositories")
    ap.add_argument("--commits", type=int, default=64)
    ap.add_argument("--cost-us", type=float, default=6.0, help="per env step: about 5%% of SPS on a 2-core CPU")
    ap.add_argument("--max-minutes", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "results" / "bisect-power"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bisect-power-"))
    rows = []
    plan = [("5%", k) for k in (rng.randint(1, args.commits) for _ in range(args.repos))]
    plan += [("nonmono", k) for k in (rng.randint(1, args.commits - 11) for _ in range(args.nonmono))]
    for r, (kind, k) in enumerate(plan):
        costs = {0: 0.0, k: args.cost_us} if kind == "5%" else {0: 0.0, k: 2 * args.cost_us, k + 10: args.cost_us}
        repo = tmp / f"repo-{r}"
        shas = make_repo(repo, args.commits, costs)
        got = run_one(repo, shas, tmp / f"run-{r}", args)
        truth = [k] if kind == "5%" else [k, k + 10]
        if "error" in got:
            correct = False
        elif kind == "5%":
            correct = got["outcome"] == "found" and got["found"] == truth
        else:
            correct = (got["outcome"] == "two-changes" and got["found"] == truth) or (
                got["outcome"] == "inconsistent" and k in got["found"] + got["candidates"])
        row = {"repo": r, "kind": kind, "true": truth, **got, "correct": correct}
        rows.append(row)
        print(f"repo {r} ({kind}): true {truth} -> " + (f"ERROR {got['error']}" if "error" in got else
              f"{got['outcome']} {got['found'] or got['candidates']}, {got['tested']} tested, "
              f"{got['minutes']:.1f} min, ends ratio {got['ends_ratio']:.3f}, correct {correct}"), file=sys.stderr)
        (out_dir / "runs.json").write_text(json.dumps(rows, indent=1))
    print("| repository | kind | true k | found | outcome | commits tested | minutes | bad/good SPS | correct |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['repo']} | {row['kind']} | {row['true']} | error | | | {row['minutes']:.1f} | | no |")
            continue
        print(f"| {row['repo']} | {row['kind']} | {', '.join(map(str, row['true']))} | "
              f"{', '.join(map(str, row['found'] or row['candidates'])) or '–'} | {row['outcome']} | {row['tested']} | "
              f"{row['minutes']:.1f} | {row['ends_ratio']:.3f} | {'yes' if row['correct'] else 'no'} |")
    five = [r for r in rows if r["kind"] == "5%"]
    if five:
        ok = [r for r in five if "error" not in r]
        print(f"\n5% repositories: right commit in {sum(r['correct'] for r in five)}/{len(five)}; commits tested "
              f"median {statistics.median(r['tested'] for r in ok) if ok else '–'}, max "
              f"{max((r['tested'] for r in ok), default='–')}; minutes median "
              f"{statistics.median(r['minutes'] for r in five):.1f}, max {max(r['minutes'] for r in five):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
