"""Helpers for bench/gpu_check.sh: summarise the sizing sweep and the torch.profiler trace.

    python bench/gpu_summary.py sweep DIR   # table of the perfkit-run trials under DIR
    python bench/gpu_summary.py best DIR    # CLI options of the fastest CUDA trial
    python bench/gpu_summary.py trace DIR   # CUDA kernels, syncs and copies per rollout step
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perfkit.records.profiling import ProfileRecord  # noqa: E402


def _trials(d: Path) -> list[tuple[str, dict]]:
    out = []
    for p in sorted(d.glob("*/trial.json")):
        out.append((p.parent.name, json.loads(p.read_text())))
    return out


def sweep(d: Path) -> None:
    rows = []
    for name, t in _trials(d):
        steps = sum(w["agent_steps"] for w in t["windows"][1:]) or t["agent_steps"]
        ph = {k: 1e6 * v / steps for k, v in t["phases"].items()}
        rows.append([name, t["device"], t["vec"]["num_workers"], t["vec"]["agents"], f"{t['sps']:,.0f}",
                     f"{t['first_window_sps']:,.0f}", *(f"{ph.get(k, 0):.2f}" for k in ("env", "forward", "copy",
                                                                                         "learn", "misc"))])
    print(tabulate(rows, headers=["trial", "device", "workers", "agents", "agent-steps/s", "first window",
                                  "env ms/1k", "forward", "copy", "learn", "misc"], tablefmt="github"))


def best(d: Path) -> None:
    cuda = [(n, t) for n, t in _trials(d) if t["device"].startswith("cuda")]
    name, t = max(cuda, key=lambda nt: nt[1]["sps"])
    v = t["scenario"]["values"]
    mb = t["ppo"]["minibatch_size"]
    print(f"--fix device=cuda --fix workers={v['workers']} --num-envs {t['vec']['num_envs']} "
          f"--ppo minibatch_size={mb}")


def trace(d: Path) -> None:
    prof = ProfileRecord.load(d / "profile.json")
    run = prof.artifacts["torch"]
    print(f"unprofiled {prof.unprofiled_sps():,.0f} agent-steps/s; under torch.profiler {run['sps']:,.0f}; "
          f"outside profiled epochs {run.get('sps_outside_profiled_epochs') or 0:,.0f}")
    events = json.loads(gzip.open(d / "torch" / "torch-trace-0.json.gz").read())["traceEvents"]
    cats = Counter(e.get("cat") for e in events)
    names = Counter(e.get("name") for e in events)
    kernels = sum(1 for e in events if e.get("cat") == "kernel")
    forward_ranges = names.get("forward", 0)
    syncs = {k: v for k, v in names.items() if k and "ynchronize" in k}
    copies = {k: v for k, v in names.items() if k and k.startswith("Memcpy")}
    rows = [["CUDA kernels", kernels], ["rollout steps (forward ranges)", forward_ranges],
            *([f"sync: {k}", v] for k, v in syncs.items()), *([f"copy: {k}", v] for k, v in copies.items())]
    print(tabulate(rows, headers=["event", "count in profiled epochs"], tablefmt="github"))
    print("categories:", dict(cats.most_common(8)))


if __name__ == "__main__":
    {"sweep": sweep, "best": best, "trace": trace}[sys.argv[1]](Path(sys.argv[2]))
