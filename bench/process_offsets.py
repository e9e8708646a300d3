"""Two processes of one trainer, in turns: how far apart are they, and what does perfkit's own core cost?

    python bench/process_offsets.py --pairs 4 --rounds 120                # fresh pairs, placement free
    python bench/process_offsets.py --pairs 1 --rounds 300 --pinned       # perfkit's core shared in turn
    python bench/process_offsets.py --pairs 4 --rounds 120 --fixed-layout # PYTHONHASHSEED=0, no ASLR

Each pair is the own trainer (bench/userenvs/own_trainer.py, single-threaded numpy) started twice
and run in turns through perfkit's `PausedCommand` (blocks of 0.3 s, A B then B A), as `compare
--cmd` runs commands; the same program twice, so every log ratio B/A away from 0 is an offset of
the process (or of where it ran), not of code. Per pair: the mean log ratio with its standard
error over rounds, and perfkit's own CPU while a block ran (cores). `--pinned` puts perfkit on cpu0
and, every other pair of rounds, A on cpu1 and B on cpu0 (with perfkit) or the reverse: the
difference is what sharing perfkit's core costs a command. `--fixed-layout` starts every process
with one hash seed and without address-space randomisation (`setarch -R`), to see how much of the
offset is memory layout.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERENVS = ROOT / "bench" / "userenvs"

from perfkit.core.command import Command  # noqa: E402
from perfkit.core.scenario import Variant  # noqa: E402
from perfkit.engine.command import PausedCommand  # noqa: E402


def _cpu_time() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _pin(pc: PausedCommand, cpus: set[int]) -> None:
    import psutil

    proc = psutil.Process(pc.run.proc.pid)
    for p in [proc, *proc.children(recursive=True)]:
        for t in p.threads():
            try:
                os.sched_setaffinity(t.id, cpus)
            except OSError:
                pass


def one_pair(rounds: int, pinned: bool, fixed_layout: bool, tmp: Path, block_s: float) -> dict:
    prefix = "setarch -R " if fixed_layout and shutil.which("setarch") else ""
    cmd = f"{prefix}{sys.executable} {USERENVS / 'own_trainer.py'}"
    extra = {"PYTHONPATH": str(USERENVS), **({"PYTHONHASHSEED": "0"} if fixed_layout else {})}
    pcs = {n: PausedCommand(Variant(n, Command(n, cmd)), tmp / f"{n}.log", r"([\d,]+) frames", (), block_s, 60,
                            extra_env=extra) for n in ("a", "b")}
    rows = []
    try:
        for pc in pcs.values():
            pc.start(5.0)
        for r in range(rounds):
            shared = "b" if (r // 2) % 2 == 0 else "a"  # who shares cpu0 with perfkit (--pinned)
            if pinned:
                _pin(pcs[shared], {0})
                _pin(pcs["a" if shared == "b" else "b"], {1})
            rec = {"shared": shared}
            own = 0.0
            for n in (("a", "b") if r % 2 == 0 else ("b", "a")):
                c0 = _cpu_time()
                w = pcs[n].run_epoch()
                own += (_cpu_time() - c0)
                rec[n] = w.agent_steps / w.seconds
                rec["seconds"] = rec.get("seconds", 0.0) + w.seconds
            rec["own"] = own / rec["seconds"]
            rows.append(rec)
    finally:
        for pc in pcs.values():
            pc.stop()
    rows = rows[2:]  # the first resumes after the warm-ups
    lr = [math.log(x["b"] / x["a"]) for x in rows]
    out = {"rounds": len(rows), "mean": statistics.fmean(lr), "se": statistics.stdev(lr) / math.sqrt(len(lr)),
           "sd": statistics.stdev(lr), "perfkit_cores": statistics.fmean(x["own"] for x in rows)}
    if pinned:
        for who in ("a", "b"):
            part = [math.log(x["b"] / x["a"]) for x in rows if x["shared"] == who]
            out[f"shared_{who}"] = (statistics.fmean(part), statistics.stdev(part) / math.sqrt(len(part)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=4, help="fresh pairs of processes, one after another")
    ap.add_argument("--rounds", type=int, default=120, help="rounds (A B or B A) per pair")
    ap.add_argument("--block-seconds", type=float, default=0.3)
    ap.add_argument("--pinned", action="store_true", help="perfkit on cpu0; A and B take turns sharing it")
    ap.add_argument("--fixed-layout", action="store_true", help="PYTHONHASHSEED=0 and setarch -R for every process")
    args = ap.parse_args()
    if args.pinned:
        os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="process-offsets-"))
    print("| pair | rounds | log(B/A) mean | its se | per-round sd | perfkit's CPU in blocks (cores) |"
          + (" B shares perfkit's core | A shares it |" if args.pinned else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if args.pinned else ""))
    means = []
    for k in range(args.pairs):
        r = one_pair(args.rounds, args.pinned, args.fixed_layout, tmp, args.block_seconds)
        means.append(r["mean"])
        extra = ""
        if args.pinned:
            extra = "".join(f" {m:+.4f} ± {s:.4f} |" for m, s in (r["shared_b"], r["shared_a"]))
        print(f"| {k + 1} | {r['rounds']} | {r['mean']:+.4f} | {r['se']:.4f} | {r['sd']:.3f} | "
              f"{r['perfkit_cores']:.4f} |{extra}", flush=True)
    if len(means) > 1:
        print(f"\nspread of the pairs' means (sd): {statistics.stdev(means):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
