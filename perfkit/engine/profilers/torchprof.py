"""torch.profiler inside a trial: a schedule over training epochs, `record_function` ranges named
after perfkit's phases, and exports a reviewer can open.

Per active cycle it writes `torch-trace-<n>.json.gz` (Chrome/Perfetto trace), `torch-ops-<n>.txt`
(`key_averages` table) and `torch-stacks-<n>.folded` (Python stacks by self CPU time). Note:
`export_stacks` writes nothing unless the profiler ran with `with_stack=True` *and* the
experimental `verbose` option, which this module sets.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from perfkit.records.trial import require_ok


class ScheduleError(ValueError):
    """A torch.profiler schedule torch would reject; the message names the field and its range."""


@dataclass
class TorchProfileConfig:
    """Schedule in training epochs (one `prof.step()` per epoch), as torch.profiler.schedule."""

    skip_first: int = 2
    wait: int = 1
    warmup: int = 1
    active: int = 2
    repeat: int = 1
    out_dir: str = "."
    row_limit: int = 40
    with_stack: bool = True  # Python stacks (torch-stacks-<n>.folded); off, the trace is several times smaller

    def __post_init__(self) -> None:
        # torch.profiler.schedule asserts these only once the profiled trial has started (after
        # the unprofiled one was spent): check them up front.
        for name, low in (("skip_first", 0), ("wait", 0), ("warmup", 0), ("active", 1), ("repeat", 0),
                          ("row_limit", 1)):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
                raise ScheduleError(f"{name} {v!r} must be an integer >= {low}")

    def to_dict(self) -> dict:
        return asdict(self)

    def profiled_epochs(self) -> set[int]:
        """0-based epoch indices the profiler is warming up or recording in (the rest cost ~nothing)."""
        out, start = set(), self.skip_first
        for _ in range(max(1, self.repeat) if self.repeat else 1000):
            cycle = range(start + self.wait, start + self.wait + self.warmup + self.active)
            out.update(cycle)
            start += self.wait + self.warmup + self.active
        return out


class TorchProfileSession:
    """Context manager the training loop drives: `step()` per epoch, `phase(name)` per phase edge."""

    def __init__(self, cfg: TorchProfileConfig, cuda: bool):
        import torch
        import torch.profiler as tp

        self.cfg = cfg
        self._torch = torch
        activities = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if cuda else [])
        self._prof = tp.profile(
            activities=activities,
            schedule=tp.schedule(skip_first=cfg.skip_first, wait=cfg.wait, warmup=cfg.warmup, active=cfg.active,
                                 repeat=cfg.repeat),
            on_trace_ready=self._export,
            with_stack=cfg.with_stack,
            experimental_config=torch._C._profiler._ExperimentalConfig(verbose=cfg.with_stack),
        )
        self._range = None
        self.cycles = 0
        self.files: list[str] = []

    def __enter__(self) -> TorchProfileSession:
        self._prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.phase(None)
        self._prof.__exit__(*exc)

    def step(self) -> None:
        self._prof.step()

    def phase(self, name: str | None) -> None:
        if self._range is not None:
            self._range.__exit__(None, None, None)
            self._range = None
        if name is not None:
            self._range = self._torch.profiler.record_function(name)
            self._range.__enter__()

    def _export(self, prof) -> None:
        out = Path(self.cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        n = self.cycles
        self.cycles += 1
        raw = out / f"torch-trace-{n}.json"
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as src, gzip.open(f"{raw}.gz.tmp", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(f"{raw}.gz.tmp", f"{raw}.gz")
        raw.unlink()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=self.cfg.row_limit)
        (out / f"torch-ops-{n}.txt").write_text(table)
        self.files += [f"{raw}.gz", str(out / f"torch-ops-{n}.txt")]
        if self.cfg.with_stack:
            stacks = out / f"torch-stacks-{n}.folded"
            prof.export_stacks(str(stacks), "self_cpu_time_total")
            self.files.append(str(stacks))


def profile(runner, variant, out_dir: Path, cfg: TorchProfileConfig) -> dict:
    """One trial with the torch.profiler schedule; SPS outside the profiled epochs is reported apart
    (the schedule should cost nothing there)."""
    from dataclasses import replace

    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {**cfg.to_dict(), "out_dir": str(out_dir)}
    tr = require_ok(replace(runner, extra={"torch_profiler": spec})(variant, 0, out_dir / "torch-trial.json"))
    info = tr.artifacts.get("torch", {})
    profiled = set(info.get("profiled_epochs", []))
    outside = [w for w in tr.steady_windows if w["index"] not in profiled]
    steps, secs = sum(w["agent_steps"] for w in outside), sum(w["seconds"] for w in outside)
    files = {"trial": str(out_dir / "torch-trial.json")}
    for f in info.get("files", []):
        files[Path(f).name] = f
    if not info.get("files"):
        raise RuntimeError(f"torch.profiler wrote nothing: the trial ran {tr.epochs} epochs, the schedule needs "
                           f"{max(profiled, default=0) + 1}; give it a longer budget")
    return {"sps": tr.sps, "sps_outside_profiled_epochs": steps / secs if secs else None, "sentinel": tr.sentinel,
            "files": files, "options": cfg.to_dict()}
