"""Scalene around a trial, CPU-only by default (memory mode is ~120x slower: useless for SPS work)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from perfkit.core.children import SOURCE_ROOT
from perfkit.core.files import atomic_write_text
from perfkit.engine.profilers import ProfilerUnavailable, find_tool
from perfkit.records.trial import require_ok

ROOT = SOURCE_ROOT  # profile perfkit's and the envs' code: both live here


def executable() -> str:
    path = find_tool("scalene")
    if path is None:
        raise ProfilerUnavailable(f"scalene is neither beside {sys.executable} nor on PATH; install it with "
                                  "`pip install scalene`")
    return path


# Scalene runs a script path, not `-m`. Running perfkit/engine/trial.py itself would put perfkit/ first on
# sys.path, where a module named like one of the standard library's would shadow it; this entry
# script, written beside the profile, runs the trial module as `python -m` would.
ENTRY = "import runpy\nrunpy.run_module('perfkit.engine.trial', run_name='__main__', alter_sys=True)\n"


def launcher(out_json: Path, memory: bool = False) -> list[str]:
    """Scalene's command line for one trial, profiling perfkit's and the envs' code (`--program-path`)."""
    entry = out_json.with_name("scalene_entry.py")
    atomic_write_text(entry, ENTRY)
    cmd = [executable(), "run", "-o", str(out_json), "--program-path", str(ROOT)]
    cmd.append("--memory" if memory else "--cpu-only")
    return [*cmd, str(entry), "---"]


def top_lines(profile: dict, n: int = 15) -> list[dict]:
    """Lines with the most CPU time (Python + native + system), from Scalene's JSON profile."""
    rows = []
    for fname, f in profile.get("files", {}).items():
        for line in f.get("lines", []):
            py, c, sys_ = line.get("n_cpu_percent_python", 0.0), line.get("n_cpu_percent_c", 0.0), line.get(
                "n_sys_percent", 0.0)
            total = py + c + sys_
            if total > 0:
                rel = fname[len(str(ROOT)) + 1:] if fname.startswith(str(ROOT)) else fname
                rows.append({"where": f"{rel}:{line['lineno']}", "cpu_percent": total, "python": py, "native": c,
                             "system": sys_, "code": line.get("line", "").strip()[:60]})
    rows.sort(key=lambda r: -r["cpu_percent"])
    return rows[:n]


def profile(runner, variant, out_dir: Path, memory: bool = False) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    out_json = out_dir / "scalene.json"
    run = replace(runner, launcher=launcher(out_json, memory))
    tr = require_ok(run(variant, 0, out_dir / "scalene-trial.json"))
    try:
        data = json.loads(out_json.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ProfilerUnavailable(f"Scalene ran but wrote no readable profile at {out_json}: {e}") from None
    top = top_lines(data)
    atomic_write_text(out_dir / "scalene-top.json", json.dumps(top, indent=1))
    return {"sps": tr.sps, "files": {"json": str(out_json)}, "top_lines": top, "sentinel": tr.sentinel,
            "options": {"memory": memory, "python": sys.version.split()[0]}}
