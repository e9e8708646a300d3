"""`perfkit learn --backend ray`: seeds on the nodes of a Ray cluster.

Learning numbers are compared at equal agent-steps, not per second, so a seed need not be paired
with anything by machine: every seed is an independent job, and a cluster's nodes all train at
once. Each node gets one *slot* per seed it trains side by side (by default one per core a trial
keeps busy: its main process plus its rollout workers), each slot a `NodeRunner` actor pinned to the
node with its share of the node's CPUs and GPUs; a slot runs one fresh trial process at a time
(`python -m perfkit.engine.trial`, or `perfkit.engine.command` for `learn --cmd`), told the cores
it may use. The driver gives the next seed to whichever slot is free.

The contract is `perfkit.engine.seeds.run_parallel`'s, so `perfkit learn` runs the same with
either: results in the order of the jobs, each trial's record written to its own file as it
arrives, `on_done` after each, and on Ctrl-C every running trial asked to stop and save, the
results so far attached to the re-raised KeyboardInterrupt as `.results`. A node lost under a seed
(it died, or was removed) loses that attempt only: the seed runs again on another slot, at most
`requeues` times, and every slot of the lost node leaves the rotation. A node whose trial process
cannot even start, while seeds ran elsewhere (perfkit or the env not importable there), is dropped
the same way. When every node is gone, the seeds not yet run are failed trials that say so.

    with ClusterSeeds("auto", per_node=None, workers=0) as seeds:
        learning.run(job, run_dir, runner=seeds)

Ray is the optional extra `perfkit[ray]`; nothing here imports it at module level.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfkit.core.files import atomic_write_text
from perfkit.engine.cluster import (ACTOR_START_S, GRACE_S, REQUEUES, WAIT_S, ClusterError, NodeRunner,
                                    _end_runners, _lost_node_errors, connect, driver_pythonpath,
                                    require_trial_nodes)
from perfkit.engine.seeds import TrialJob, load_trial_dict, seeds_at_once
from perfkit.records.trial import TrialResult

@dataclass
class Slot:
    """One runner on one node: the cores and GPUs (a share) its trials are given."""

    key: str  # "<node id>/<k>"
    node: str
    cores: int
    gpus: float
    actor: Any


def slots_for(cpus: float, gpus: float, per_node: int | None, workers: int) -> int:
    """Seeds one node trains side by side: `per_node` when given, else as locally (`seeds_at_once`)."""
    return per_node or seeds_at_once(cpus, workers, gpus)


def slot_spec(spec: dict[str, Any], slot: Slot, cwd: str) -> dict[str, Any]:
    """The job's spec as one slot runs it: the built-in trainer told the slot's cores; a command told
    them through the thread variables perfkit set for it (`perfkit_threads`; the user's own stay as
    they are), and run in the driver's working directory unless it names one (a shared or identical
    file system, as for PYTHONPATH)."""
    out = dict(spec)
    if "cores" in out:
        out["cores"] = slot.cores
    if "command" in out:
        cmd = dict(out["command"])
        env = dict(cmd.get("env") or {})
        for var in out.get("perfkit_threads", ()):
            env[var] = str(slot.cores)
        cmd["env"] = env
        cmd["cwd"] = cmd.get("cwd") or cwd
        out["command"] = cmd
    return out


def start_slots(ray, node_ids: list[str], pythonpath: list[str], per_node: int | None, workers: int,
                timeout: float = ACTOR_START_S) -> tuple[list[Slot], dict[str, dict]]:
    """Every node's slots, pinned to it; (slots, {node: info with its "slots"}). Nodes none of whose
    runners started within `timeout` s are left out; a ClusterError when no node is left."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    resources = {n["NodeID"]: n["Resources"] for n in ray.nodes()}
    remote = ray.remote(NodeRunner)
    slots: list[Slot] = []
    for nid in node_ids:
        cpus, gpus = resources[nid].get("CPU", 1), resources[nid].get("GPU", 0)
        k = slots_for(cpus, gpus, per_node, workers)
        pinned = NodeAffinitySchedulingStrategy(nid, soft=False)
        for i in range(k):
            actor = remote.options(num_cpus=cpus / k, num_gpus=gpus / k, max_restarts=0, max_concurrency=2,
                                   scheduling_strategy=pinned).remote(pythonpath)
            slots.append(Slot(f"{nid}/{i}", nid, max(1, math.floor(cpus / k)), gpus / k, actor))
    refs = {s.actor.info.remote(): s for s in slots}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    infos: dict[str, dict] = {}
    started: set[str] = set()
    for ref in ready:
        with contextlib.suppress(*_lost_node_errors(ray)):
            info = ray.get(ref)
            infos.setdefault(refs[ref].node, info)
            started.add(refs[ref].key)
    for s in [s for s in slots if s.key not in started]:
        with contextlib.suppress(Exception):
            ray.kill(s.actor)
    slots = [s for s in slots if s.key in started]
    if not slots:
        raise ClusterError(f"no node of the cluster started a trial runner within {timeout:.0f} s "
                           f"({len(node_ids)} node(s) with CPUs; are they busy with other Ray work?)")
    for nid, info in infos.items():
        mine = [s for s in slots if s.node == nid]
        info.update(slots=len(mine), cores_per_seed=mine[0].cores)
    return slots, infos


class ClusterSeeds:
    """Connects to the cluster and starts every node's slots on entry; ends them (and the
    connection, if this made it) on exit. Calling it runs jobs on the slots, as `run_parallel` runs
    them locally; `parallel` (the local number side by side) is ignored: the slots decide."""

    def __init__(self, address: str = "auto", per_node: int | None = None, workers: int = 0,
                 requeues: int = REQUEUES):
        self.address, self.per_node, self.workers, self.requeues = address, per_node, workers, requeues
        self.ray = None
        self.connected = False
        self.slots: list[Slot] = []
        self.infos: dict[str, dict] = {}

    def __enter__(self) -> ClusterSeeds:
        self.ray, self.connected = connect(self.address)
        try:
            self.slots, self.infos = start_slots(self.ray, require_trial_nodes(self.ray), driver_pythonpath(),
                                                 self.per_node, self.workers)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.ray is None:
            return
        _end_runners(self.ray, {s.key: s.actor for s in self.slots})
        if self.connected:
            self.ray.shutdown()
        self.ray = None

    @property
    def parallel(self) -> int:
        """Seeds the cluster trains at once."""
        return len(self.slots)

    def __call__(self, jobs: list[TrialJob], parallel: int = 0,
                 on_done: Callable[[TrialJob, TrialResult], None] | None = None) -> list[TrialResult]:
        scheduler = SeedScheduler(self.ray, self.slots, self.infos, self.requeues)
        try:
            return scheduler.run(jobs, on_done)
        finally:
            self.slots = scheduler.slots  # a node dropped in this batch stays dropped for the next


class SeedScheduler:
    """The driver's loop: the next job to a free slot, results recorded as they arrive, a lost or
    broken node's slots dropped and its seed run again elsewhere.

        results = SeedScheduler(ray, slots, infos).run(jobs, on_done)
    """

    def __init__(self, ray, slots: list[Slot], infos: dict[str, dict], requeues: int = REQUEUES,
                 grace_s: float = GRACE_S, cwd: str | None = None):
        self.ray, self.slots, self.infos, self.requeues, self.grace_s = ray, list(slots), infos, requeues, grace_s
        self.cwd = cwd or os.getcwd()
        self.lost_errors = _lost_node_errors(ray)

    def run(self, jobs: list[TrialJob], on_done: Callable[[TrialJob, TrialResult], None] | None = None
            ) -> list[TrialResult]:
        pending: deque[int] = deque(range(len(jobs)))
        tries = [0] * len(jobs)
        idle = [s.key for s in self.slots]
        by_key = {s.key: s for s in self.slots}
        inflight: dict[Any, tuple[Slot, int, float]] = {}
        results: dict[int, TrialResult] = {}

        def finish(i: int, tr: TrialResult) -> None:
            tr.requeued = tries[i]
            results[i] = tr
            tr.save(jobs[i].out)
            if on_done is not None:
                on_done(jobs[i], tr)

        try:
            while pending or inflight:
                while idle and pending:
                    slot, i = by_key[idle.pop(0)], pending.popleft()
                    spec = slot_spec(jobs[i].spec, slot, self.cwd)
                    inflight[slot.actor.run.remote(spec, jobs[i].module)] = (slot, i, time.monotonic())
                if not inflight:  # every node is gone: the seeds left cannot run
                    for i in pending:
                        finish(i, TrialResult.failed(jobs[i].scenario, jobs[i].label,
                                                     "every node of the Ray cluster was lost before this seed ran"))
                    break
                ref = self._next_ready(inflight)
                slot, i, t0 = inflight.pop(ref)
                job = jobs[i]
                try:
                    payload = self.ray.get(ref)
                except self.lost_errors as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    self._drop(slot.node, idle, f"lost during a trial ({first})")
                    self._again_or_fail(job, i, tries, pending, finish, f"node {slot.node[:8]} was lost during the trial")
                    continue
                except self.ray.exceptions.RayError as e:  # the runner failed, not the node: a failed trial
                    tr = TrialResult.failed(job.scenario, job.label, f"trial runner on node failed: {e}")
                else:
                    tr = trial_from_payload(payload, job)
                    if payload["trial"] is None and not tr.interrupted and self._ran_elsewhere(results, slot.node):
                        # the process could not start here, and trials did on another node: the node is at fault
                        self._drop(slot.node, idle, tr.error or "no result")
                        self._again_or_fail(job, i, tries, pending, finish,
                                            f"node {slot.node[:8]} cannot run trials, though other nodes did: "
                                            f"{tr.error}")
                        continue
                    _write_stderr(job.out, payload.get("stderr") or "")
                tr.node = dict(self.infos.get(slot.node, {"id": slot.node}))
                tr.dispatch_s = max(0.0, time.monotonic() - t0 - (tr.process_s or 0.0))
                finish(i, tr)
                if any(s.key == slot.key for s in self.slots):
                    idle.append(slot.key)
        except KeyboardInterrupt as stop:
            self._stop(inflight, jobs, results, tries)
            stop.results = [(jobs[i], results[i]) for i in sorted(results)]  # type: ignore[attr-defined]
            raise
        return [results[i] for i in sorted(results)]

    def _next_ready(self, inflight: dict):
        """A finished trial's ref, waited for in short steps (a blocked wait would hold off Ctrl-C)."""
        ready: list = []
        while not ready:
            ready, _ = self.ray.wait(list(inflight), num_returns=1, timeout=WAIT_S)
        return ready[0]

    def _ran_elsewhere(self, results: dict[int, TrialResult], node: str) -> bool:
        return any(t.status == "ok" and t.node.get("id") not in (None, node) for t in results.values())

    def _drop(self, node: str, idle: list[str], why: str) -> None:
        """No more seeds go to `node`: its slots leave the rotation and their runners end."""
        info = self.infos.setdefault(node, {"id": node})
        info["lost"], info["why"] = True, why
        for s in [s for s in self.slots if s.node == node]:
            self.slots.remove(s)
            if s.key in idle:
                idle.remove(s.key)
            with contextlib.suppress(Exception):
                self.ray.kill(s.actor)

    def _again_or_fail(self, job: TrialJob, i: int, tries: list[int], pending: deque, finish, reason: str) -> None:
        """A seed whose attempt was lost with its node runs again first, unless it has `requeues` times."""
        if tries[i] < self.requeues:
            tries[i] += 1
            pending.appendleft(i)
        else:
            finish(i, TrialResult.failed(job.scenario, job.label, f"{reason}; the seed was already run again "
                                                                  f"{tries[i]} time(s), given up"))

    def _stop(self, inflight: dict, jobs: list[TrialJob], results: dict[int, TrialResult], tries: list[int]) -> None:
        """Ctrl-C: every slot told to stop its trial (and start none), what they measured kept; what has
        not answered after the grace period is recorded as interrupted (the runners are killed on exit)."""
        for s in self.slots:
            with contextlib.suppress(Exception):
                s.actor.stop.remote()
        ready: set = set()
        deadline = time.monotonic() + self.grace_s
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
            while len(ready) < len(inflight) and time.monotonic() < deadline:
                ready = set(self.ray.wait(list(inflight), num_returns=len(inflight), timeout=WAIT_S)[0])
        for ref, (slot, i, _) in inflight.items():
            tr = None
            if ref in ready:
                with contextlib.suppress(Exception):
                    tr = trial_from_payload(self.ray.get(ref, timeout=5), jobs[i])
            if tr is None:
                tr = TrialResult.failed(jobs[i].scenario, jobs[i].label, None, interrupted=True)
            tr.interrupted = True
            tr.node = dict(self.infos.get(slot.node, {"id": slot.node}))
            tr.requeued = tries[i]
            results[i] = tr
            with contextlib.suppress(OSError):
                tr.save(jobs[i].out)
        inflight.clear()


def trial_from_payload(payload: dict[str, Any], job: TrialJob) -> TrialResult:
    """The TrialResult a runner's payload holds, or a failed (or interrupted) one when the trial left
    none, with the process's wall time."""
    code = payload["code"]
    stopped = bool(payload.get("stopped")) or code in (130, -signal.SIGINT)
    tr = load_trial_dict(payload["trial"], code, payload["stderr"], job.scenario, job.label, stopped)
    tr.process_s = payload.get("wall_s")
    return tr


def _write_stderr(out: Path, text: str) -> None:
    """The trial's stderr next to its record, as a local run leaves it."""
    with contextlib.suppress(OSError):
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out.with_suffix(".stderr"), text)
