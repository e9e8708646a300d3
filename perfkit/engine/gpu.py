"""GPU rows of `perfkit explain` on CUDA: one torch.profiler trace per explained variant, read by
Holistic Trace Analysis (HTA, `pip install holistictraceanalysis`), not by hand-written parsing.

From each trace HTA gives the main stream's GPU idle time split by cause (host wait: the CPU had
not queued the next kernel; kernel wait: the gap between back-to-back kernels; other) and the
kernel time. perfkit adds the CUDA synchronisations the host made (the runtime calls
cudaStreamSynchronize, cudaDeviceSynchronize and cudaEventSynchronize) and puts every number per
agent-step (µs) or per rollout step (counts), so A and B compare directly with the gap above them.

One trace per variant (two profiled epochs after warm-up): these rows carry no interval; they say
where the GPU's time went, next to the CPU-side phases and functions that have one.
Without a GPU, or without HTA, there are no rows and explain says why in one note.
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from pathlib import Path

from perfkit.core.markers import block_slug
from perfkit.records.explain import GpuSummary

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
# The torch.profiler schedule of a GPU trace, in epochs: epoch 0 is SPS's warm-up; one more epoch
# warms the profiler up, then two are recorded.
TRACE_SCHEDULE = {"skip_first": 1, "wait": 0, "warmup": 1, "active": 2, "repeat": 1, "with_stack": False}
HTA_HINT = "pip install holistictraceanalysis (or: pip install 'perfkit[gpu]')"


class HtaUnavailable(RuntimeError):
    pass


def require_hta():
    """HTA's TraceAnalysis; HtaUnavailable (with the install hint) without it."""
    try:
        logging.getLogger("hta").setLevel(logging.ERROR)
        from hta.trace_analysis import TraceAnalysis
    except ImportError as e:
        raise HtaUnavailable(f"the GPU rows need Holistic Trace Analysis: {HTA_HINT} ({e})") from None
    return TraceAnalysis


def analyse_trace(path: str | os.PathLike, agent_steps_per_epoch: int, rollout_steps_per_epoch: int) -> GpuSummary:
    """One torch.profiler trace (CUDA activity recorded) -> GpuSummary. Raises ValueError when the
    trace holds no GPU kernels (a CPU trial), HtaUnavailable without HTA."""
    with warnings.catch_warnings():  # HTA's own deprecation warnings (pandas) are not the user's
        warnings.simplefilter("ignore")
        return _analyse(require_hta(), path, agent_steps_per_epoch, rollout_steps_per_epoch)


def _analyse(TraceAnalysis, path, agent_steps_per_epoch: int, rollout_steps_per_epoch: int) -> GpuSummary:
    # HTA joins a relative path to its own default folder: give it an absolute one.
    analyzer = TraceAnalysis(trace_files={0: str(Path(path).resolve())}, include_last_profiler_step=True)
    df = analyzer.t.get_trace(0)
    sym = analyzer.t.symbol_table.get_sym_id_map()
    names = analyzer.t.symbol_table.get_sym_table()
    kernel_cats = [sym[c] for c in ("kernel", "gpu_memcpy", "gpu_memset") if c in sym]
    on_gpu = df[df["stream"].ne(-1) & df["cat"].isin(kernel_cats)]
    if on_gpu.empty:
        raise ValueError(f"{path}: no GPU kernels in this trace (was the trial on the CPU?)")
    # The stream that did the most work: the training loop's (default) stream.
    stream = int(on_gpu.groupby("stream")["dur"].sum().idxmax())
    idle, _ = analyzer.get_idle_time_breakdown(ranks=[0], streams=[stream], visualize=False)
    steps = [i for i, n in enumerate(names) if n.startswith("ProfilerStep#")]
    epochs = int(df["name"].isin(steps).sum()) or 1
    agent_steps = epochs * agent_steps_per_epoch
    rollout_steps = epochs * rollout_steps_per_epoch
    main = on_gpu[on_gpu["stream"] == stream]
    by_cause = {str(r["idle_category"]): float(r["idle_time"]) for _, r in idle.iterrows()}
    sync_ids = [sym[s] for s in SYNC_CALLS if s in sym]
    syncs = int(df["name"].isin(sync_ids).sum())
    return GpuSummary(
        epochs=epochs, agent_steps_per_epoch=agent_steps_per_epoch, rollout_steps_per_epoch=rollout_steps_per_epoch,
        kernel_us=float(main["dur"].sum()) / agent_steps,
        idle_us={k: by_cause.get(k, 0.0) / agent_steps for k in ("host_wait", "kernel_wait", "other")},
        syncs_per_rollout_step=syncs / rollout_steps, kernels_per_rollout_step=len(main) / rollout_steps,
        stream=stream, trace=str(path),
        extra={"profiler_step_us": float(df[df["name"].isin(steps)]["dur"].sum()) / agent_steps})


def trace_dir(run_dir: str | os.PathLike, label: str) -> Path:
    return Path(run_dir) / "gpu" / block_slug(label)


def capture(variants, runner, run_dir: str | os.PathLike, progress=None) -> dict[str, str]:
    """One torch.profiler trial per variant (CUDA activity recorded), traces under run_dir/gpu/.
    Returns {label: error} for the variants whose trace could not be taken."""
    from perfkit.engine.profilers import torchprof

    errors = {}
    for v in variants:
        if progress:
            progress(f"GPU trace of {v.label} (torch.profiler, {TRACE_SCHEDULE['active']} epochs)")
        cfg = torchprof.TorchProfileConfig(**TRACE_SCHEDULE)
        try:
            torchprof.profile(runner, v, trace_dir(run_dir, v.label), cfg)
        except Exception as e:  # a failed trace is a note in the record, not the end of the explain
            errors[v.label] = f"{type(e).__name__}: {e}"
    return errors


def summarise_dir(run_dir: str | os.PathLike, labels) -> tuple[dict[str, GpuSummary], list[str]]:
    """The GPU summaries of the traces captured beside a compare, and notes for what is missing."""
    from perfkit.records.trial import TrialResult

    run_dir = Path(run_dir)
    out, notes = {}, []
    for label in labels:
        where = trace_dir(run_dir, label)
        traces = sorted(glob.glob(str(where / "torch-trace-*.json.gz")))
        trial = where / "torch-trial.json"
        if not traces or not trial.exists():
            continue
        t = TrialResult.load(trial)
        steady = t.steady_windows
        per_epoch = int(steady[0]["agent_steps"]) if steady else 0
        rollout = int(t.ppo.get("num_steps", 0))
        if not per_epoch or not rollout:
            notes.append(f"GPU trace of {label}: its trial recorded no steady epoch")
            continue
        try:
            s = analyse_trace(traces[0], per_epoch, rollout)
        except HtaUnavailable as e:
            return {}, [str(e)]
        except Exception as e:  # an unreadable trace: say so, keep the CPU-side explanation
            notes.append(f"GPU trace of {label} could not be analysed: {type(e).__name__}: {e}")
            continue
        s.trace = os.path.relpath(traces[0], run_dir)
        out[label] = s
    return out, notes
