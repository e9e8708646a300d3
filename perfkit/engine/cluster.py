"""`perfkit compare --backend ray`: a compare's trials on the nodes of a Ray cluster.

Every trial is the same `python -m perfkit.engine.trial` as locally, in a fresh process, started on a
node by that node's `NodeRunner` actor (one per node, pinned to it, holding all its CPUs and GPUs,
so Ray puts nothing else there). The driver gives each node one *round* at a time (every variant once,
in order), and one trial of it at a time: two trials never share a machine, and the two sides of
every paired ratio ran on the same machine. Statistics then block by node
(`stats.compare_node_blocked`): a fast node speeds up both sides of its rounds, and the table
shows the ratio per node and warns when nodes disagree.

Nothing measured is lost: every TrialResult is written to `trials/<variant>/trial-K.json`,
atomically, as it arrives, and `sps.json` is rewritten after it (at most once a second: see
`_Saver`) and at the end. A node that dies under a trial loses that trial (recorded,
`node_lost`), and the whole round goes back in the queue for another node (at most `requeues`
times), because its pairs must come from one machine; the round's trials already finished on the
dead node are kept, marked superseded. A node whose trial process cannot even start (no result,
while the same variant ran on another node: perfkit or the env not importable there) is dropped
the same way, so one broken machine cannot fail most of the sweep. A trial whose env raises is
a failed trial, as locally. Ctrl-C or SIGTERM asks every running trial to stop and save (SIGINT
to its process group, as locally) and records what they measured; what still runs after the
grace period is killed with its process group.

Ray is the optional extra `perfkit[ray]`; nothing here imports it at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfkit.core.children import SOURCE_ROOT, exit_text
from perfkit.core.machine import cpu_model, machine_info
from perfkit.core.scenario import Variant
from perfkit.engine.local import SubprocessRunner, precision_reached
from perfkit.engine.rounds import PRECISION, TIME, Rounds, StopRule
from perfkit.records.compare import NODES_ALL_LOST, CompareResult
from perfkit.records.trial import TrialResult

INSTALL_HINT = "pip install 'perfkit[ray]'"
REQUEUES = 2  # times one round may go back in the queue after its node died
ACTOR_START_S = 120.0  # how long a node's runner may take to start before the node is left out
GRACE_S = 30.0  # after Ctrl-C, how long running trials may take to save
MIN_SAVE_S = 1.0  # sps.json is rewritten at most this often (each trial's own file at once)
WAIT_S = 0.2  # the driver waits for results in steps this long, so a signal reaches it at once


class ClusterError(RuntimeError):
    """Ray is missing, the cluster cannot be reached, or it has no node to run trials on."""


def require_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--backend ray needs Ray, which is not installed here; install it with: {INSTALL_HINT}") \
            from None
    return ray


class NodeRunner:
    """Runs trials on one node (or one slot of it), one at a time, each in a fresh `python -m
    perfkit.engine.trial` process. An async Ray actor (`ray.remote(NodeRunner)`), so `stop` can reach a running `run`."""

    def __init__(self, pythonpath: list[str]):
        self.pythonpath = pythonpath
        self.proc: asyncio.subprocess.Process | None = None
        self.prctl = _prctl()  # looked up here: a child of a threaded process must not dlopen
        self.stopping: int | None = None  # the signal a stop or kill asked for: no trial starts after it

    async def info(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        node_id = ctx.get_node_id()
        resources = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id), {})
        accel = sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))
        return {"id": node_id, "host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(),
                "ray_cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0),
                "gpu": accel[0] if accel else None, "python": sys.version.split()[0]}

    async def run(self, spec: dict[str, Any], module: str = "perfkit.engine.trial") -> dict[str, Any]:
        """Run one trial (`python -m MODULE SPEC OUT`: perfkit's trainer, or `perfkit.engine.command`
        for a user's command); returns its exit status, stderr, the trial's JSON (None if it wrote
        none) and the trial process's wall time. After a stop (or kill) no trial starts: it
        returns at once as a trial stopped before it began (exit 130, no JSON)."""
        if self.stopping is not None:
            return {"code": 130, "stderr": "", "trial": None, "wall_s": 0.0, "stopped": True}
        work = Path(tempfile.mkdtemp(prefix="perfkit-trial-"))
        try:
            spec_path, out = work / "trial.spec.json", work / "trial.json"
            spec_path.write_text(json.dumps(spec))
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (*self.pythonpath, env.get("PYTHONPATH")) if p)
            t0 = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, str(spec_path), str(out),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
                preexec_fn=functools.partial(_child_setup, self.prctl))
            if self.stopping is not None:  # the stop came while the process was being started: it gets it now
                self._signal(self.stopping)
            _, err = await self.proc.communicate()
            wall = time.monotonic() - t0
            code, self.proc = self.proc.returncode, None
            trial = json.loads(out.read_text()) if out.exists() else None
            # "stopped": it was asked to stop (or killed); without a result, that is why, whatever its
            # exit status (a stop that lands while Python starts up is a fatal error there, exit 1)
            return {"code": code, "stderr": err.decode(errors="replace"), "trial": trial, "wall_s": wall,
                    "stopped": self.stopping is not None}
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def stop(self) -> bool:
        """Ask the running trial to stop and save (SIGINT to its process group, as Ctrl-C locally);
        a trial being started gets it as soon as it exists, and none starts afterwards."""
        if self.stopping is None:
            self.stopping = signal.SIGINT
        return self._signal(signal.SIGINT)

    async def kill(self) -> bool:
        """End the running trial and every process of its group (its rollout workers) at once;
        likewise one being started, and none starts afterwards."""
        self.stopping = signal.SIGKILL
        return self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> bool:
        if self.proc is None or self.proc.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
        return True


def _prctl():
    """libc's prctl, or None where there is none (not Linux)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _child_setup(prctl) -> None:
    """In the trial process, before it starts: be killed when the runner that started it dies (its
    node removed) instead of running on, unseen, on a machine the next trials will measure on; and
    take SIGINT and SIGTERM as a fresh process does (Ray's worker threads block them, and a blocked
    mask is inherited: the trial could not be asked to stop and save)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class _Round:
    """A round on its way through one node: every variant once, in order."""

    k: int
    requeued: int = 0  # times it went back in the queue because its node died
    rerun: int = 0  # times it was re-run because other processes disturbed it
    next: int = 0  # index of the next variant to run
    trials: list[TrialResult] = field(default_factory=list)


@dataclass
class _Slot:
    node: str
    round: _Round
    submitted: float


def connect(address: str):
    """Connect this process to the Ray cluster at `address` ("auto": the one started on this
    machine with `ray start`). Returns (ray, whether this call connected it)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    hint = ("Start one first: `ray start --head --num-cpus 0` on this machine and `ray start --address HEAD:6379` on "
            "each machine for the trials (or `ray start --head --num-cpus 1` to try it on this one), then pass "
            "--ray-address auto or HEAD:6379")
    if address != "auto":
        _probe(address, hint)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False, include_dashboard=False)
        # Ray's core worker installs its own SIGTERM handler (it logs and dies): perfkit's (stop the
        # trials, keep what they measured) goes back in place.
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(f"--ray-address {address}: cannot connect to a Ray cluster ({first}). {hint}") from None
    return ray, True


def _probe(address: str, hint: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at (ray.init retries for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray-address {address!r} is not valid; valid: auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"--ray-address {address}: nothing answers at {host}:{port} ({e.strerror or e}). {hint}") \
            from None


def driver_pythonpath() -> list[str]:
    """What the trials on the nodes put first on their PYTHONPATH: this perfkit, the driver's
    working directory and its PYTHONPATH, as absolute paths, so `--env pkg.module:factory` imports
    on a node as it did here (on a shared or identical file system; otherwise install the package
    on every node)."""
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [str(SOURCE_ROOT), os.getcwd(), *(str(Path(p).resolve()) for p in extra)]
    return list(dict.fromkeys(paths))


def trial_nodes(ray) -> list[str]:
    """Alive nodes with at least one CPU for Ray to give (a head started with --num-cpus 0 runs none)."""
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]


def require_trial_nodes(ray) -> list[str]:
    """`trial_nodes`, or a ClusterError that says how to add one."""
    nodes = trial_nodes(ray)
    if not nodes:
        raise ClusterError("the Ray cluster has no node with CPUs to run trials on (a head started with "
                           "--num-cpus 0 runs none); start one with `ray start --address HEAD:6379` on a machine "
                           "for the trials, or `ray start --head --num-cpus 1` to try it on this one")
    return nodes


def _lost_node_errors(ray) -> tuple[type[BaseException], ...]:
    names = ("RayActorError", "ActorUnavailableError", "NodeDiedError", "WorkerCrashedError", "ObjectLostError",
             "OwnerDiedError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def start_runners(ray, node_ids: list[str], pythonpath: list[str], timeout: float = ACTOR_START_S):
    """One NodeRunner per node, pinned to it and holding all its CPUs. Returns ({node: actor},
    {node: info}); nodes whose runner did not start in `timeout` s (busy with other work) are left out."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    resources = {n["NodeID"]: n["Resources"] for n in ray.nodes()}
    remote = ray.remote(NodeRunner)
    actors = {}
    for nid in node_ids:
        pinned = NodeAffinitySchedulingStrategy(nid, soft=False)
        # All of the node's CPUs and GPUs: Ray puts nothing else there, and the trial sees the GPUs
        # (Ray hides them from an actor that asked for none).
        actors[nid] = remote.options(num_cpus=resources[nid].get("CPU", 1), num_gpus=resources[nid].get("GPU", 0),
                                     max_restarts=0, max_concurrency=2, scheduling_strategy=pinned).remote(pythonpath)
    refs = {actors[nid].info.remote(): nid for nid in node_ids}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    infos = {}
    for ref in ready:
        with contextlib.suppress(*_lost_node_errors(ray)):
            info = ray.get(ref)
            infos[refs[ref]] = info
    for nid in set(actors) - set(infos):
        ray.kill(actors.pop(nid))
    if not infos:
        raise ClusterError(f"no node of the cluster started a trial runner within {timeout:.0f} s "
                           f"({len(node_ids)} node(s) with CPUs; are they busy with other Ray work?)")
    return actors, infos


def run_compare_ray(
    variants: list[Variant],
    rule: StopRule,
    runner: SubprocessRunner,
    run_dir: Path,
    address: str = "auto",
    on_trial: Callable[[int, int, Variant, TrialResult], None] | None = None,
    stop_on_failure: bool = False,
    requeues: int = REQUEUES,
    on_dispatch: Callable[[str, int, Variant], None] | None = None,
    on_nodes: Callable[[dict[str, dict]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CompareResult:
    """Run the compare's rounds on the cluster's nodes, one round per node at a time; the same
    record as `run_compare`, with `backend="ray"`, every trial's node, and `nodes`.
    `on_dispatch(node, round, variant)` is called as each trial is sent to a node."""
    ray, connected = connect(address)
    pythonpath = driver_pythonpath()
    actors: dict[str, Any] = {}
    try:
        actors, infos = start_runners(ray, require_trial_nodes(ray), pythonpath)
        if on_nodes is not None:
            on_nodes(infos)
        return Scheduler(ray=ray, actors=actors, infos=infos, variants=variants, rule=rule, runner=runner,
                         run_dir=run_dir, on_trial=on_trial, stop_on_failure=stop_on_failure, requeues=requeues,
                         on_dispatch=on_dispatch, clock=clock).run()
    finally:
        _end_runners(ray, actors)
        if connected:
            ray.shutdown()


def _end_runners(ray, actors: dict[str, Any]) -> None:
    """Kill whatever trial is still running on each node (a second Ctrl-C, a trial past its grace
    period), with its rollout workers, then the runners."""
    refs = []
    for actor in actors.values():
        with contextlib.suppress(Exception):
            refs.append(actor.kill.remote())
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=5.0)
    for actor in actors.values():
        with contextlib.suppress(Exception):
            ray.kill(actor)


class Scheduler:
    """The driver's loop of a compare on the cluster: it gives each idle node a round, one trial of it
    at a time, records every trial as it arrives, sends the round of a lost (or broken) node to
    another node, runs a disturbed round again on its node, and stops adding rounds when the stop
    rule is met, a trial fails (with --stop-on-failure), every node is lost, or Ctrl-C comes.

        result = Scheduler(ray=ray, actors=actors, infos=infos, variants=variants, rule=rule,
                           runner=runner, run_dir=run_dir).run()

    `actors` ({node: NodeRunner}) is shared with the caller, which ends the runners afterwards: a
    dropped node's runner leaves it. The state between two results is on the instance: `queue`,
    `next_round`, `idle`, `inflight`, `adding`, `cut`, `done` and `total` (the progress `on_trial`
    is told), and `rounds` (the rounds finished, for the stop rule)."""

    def __init__(self, *, ray, actors: dict[str, Any], infos: dict[str, dict], variants: list[Variant],
                 rule: StopRule, runner: SubprocessRunner, run_dir: Path,
                 on_trial: Callable[[int, int, Variant, TrialResult], None] | None = None,
                 stop_on_failure: bool = False, requeues: int = REQUEUES,
                 on_dispatch: Callable[[str, int, Variant], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.ray, self.actors, self.infos, self.variants = ray, actors, infos, variants
        self.rule, self.runner, self.run_dir, self.clock = rule, runner, run_dir, clock
        self.on_trial, self.on_dispatch = on_trial, on_dispatch
        self.stop_on_failure, self.requeues = stop_on_failure, requeues
        self.result = CompareResult(
            variants=[v.label for v in variants], scenarios={v.label: v.scenario.to_dict() for v in variants},
            trials={v.label: [] for v in variants}, trials_planned=rule.rounds, machine=machine_info(),
            stopping={"rule": rule.to_dict(), "reason": "rounds"}, backend="ray", nodes=dict(infos),
        )
        self.saver = _Saver(self.result, run_dir / "sps.json")
        self.lost_errors = _lost_node_errors(ray)
        self.queue: deque[_Round] = deque()  # rounds whose node was lost, to start again elsewhere
        self.next_round = 0  # the number of the next new round
        self.adding = True  # new rounds may start (False once the rule is met, or on a failure with --stop-on-failure)
        self.cut = False  # --stop-on-failure: rounds under way stop too
        self.idle = list(actors)  # nodes without a round
        self.inflight: dict[Any, _Slot] = {}  # each running trial's ref: its node and round
        self.done = 0  # trials recorded (not counting lost ones)
        self.total = rule.rounds * len(variants)  # trials planned: grows with each re-queued or re-run round
        self.rounds: Rounds | None = None  # the rounds finished on any node, and the rule's clock: from run()

    def run(self) -> CompareResult:
        """Run rounds until none is left to start and none runs, or Ctrl-C; the record, saved."""
        self.rounds = Rounds(self.rule, self.clock)
        try:
            while True:
                self._fill_idle_nodes()
                if not self.inflight:
                    if self._more_rounds():
                        self.result.stopping["reason"] = NODES_ALL_LOST
                    break
                self._on_ready(self._next_ready())
        except KeyboardInterrupt:
            self._interrupted()
        finally:
            self.result.stopping["rounds_run"] = complete_rounds(self.result)
            self.saver.save(force=True)
        return self.result

    def _more_rounds(self) -> bool:
        """A round is still to start: one re-queued, or one of the plan's."""
        return self.adding and bool(self.queue or self.next_round < self.rule.rounds)

    def _fill_idle_nodes(self) -> None:
        """Give every idle node a round: a re-queued one first, else the next new one."""
        while self.idle and self._more_rounds():
            if self.queue:
                rnd = self.queue.popleft()
            else:
                rnd, self.next_round = _Round(self.next_round), self.next_round + 1
            self.submit(self.idle.pop(0), rnd)

    def _next_ready(self):
        """The ref of a trial that has ended (waiting in short steps: a blocked ray.wait would hold
        off Ctrl-C and SIGTERM)."""
        ready: list = []
        while not ready:
            ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=WAIT_S)
        return ready[0]

    def submit(self, node: str, rnd: _Round) -> None:
        """Send `rnd`'s next trial to `node`."""
        v = self.variants[rnd.next]
        ref = self.actors[node].run.remote(self.runner.spec(v), self.runner.module)
        self.inflight[ref] = _Slot(node, rnd, time.monotonic())
        if self.on_dispatch is not None:
            self.on_dispatch(node, rnd.k, v)

    def record(self, tr: TrialResult, slot: _Slot, v: Variant) -> None:
        """Put `tr` in the record with its round and node, write its own file, and (perhaps) sps.json."""
        rnd = slot.round
        tr.round, tr.node, tr.requeued = rnd.k, dict(self.infos[slot.node]), rnd.requeued
        self.result.trials[v.label].append(tr)
        name = f"trial-{rnd.k}" + (f"-requeued{rnd.requeued}" if rnd.requeued else "") + \
            (f"-rerun{rnd.rerun}" if rnd.rerun else "") + ("-lost" if tr.node_lost else "")
        tr.save(self.run_dir / "trials" / v.slug / f"{name}.json")
        self.saver.save()

    def _on_ready(self, ref) -> None:
        """The trial behind `ref` has ended: record it, or drop its node if the node was lost under
        it or cannot run trials."""
        slot = self.inflight[ref]
        v = self.variants[slot.round.next]
        try:
            payload = self.ray.get(ref)
        except self.lost_errors as e:
            del self.inflight[ref]
            self._node_lost(slot, v, e)
            return
        except self.ray.exceptions.RayError as e:  # the runner itself failed (not the trial): a failed trial
            tr = TrialResult.failed(v.scenario.to_dict(), v.label, f"trial runner on node failed: {e}")
        else:
            tr = self._on_payload(payload, slot, v)
            if payload["trial"] is None and not tr.interrupted and _ran_elsewhere(self.result, v, slot.node):
                # The trial's process could not even start here, and it did on another node: the
                # node is at fault (perfkit or the env not importable there), not the variant.
                del self.inflight[ref]
                self._node_broken(slot, v, tr)
                return
        del self.inflight[ref]
        self._on_result(tr, slot, v)

    def _on_payload(self, payload: dict[str, Any], slot: _Slot, v: Variant) -> TrialResult:
        """The trial a runner returned, with the process's wall time and the time around it."""
        tr = _trial_from(payload, v)
        tr.process_s = payload["wall_s"]
        tr.dispatch_s = max(0.0, time.monotonic() - slot.submitted - tr.process_s)
        return tr

    def _on_result(self, tr: TrialResult, slot: _Slot, v: Variant) -> None:
        """Record a trial that ended on its node, then go on with its round there: the next trial, the
        whole round again if it was disturbed, or, once it is complete, the node is free."""
        rnd = slot.round
        self.record(tr, slot, v)
        self.done += 1
        if self.on_trial is not None:
            self.on_trial(self.done, self.total, v, tr)
        if tr.status == "failed" and self.stop_on_failure:
            self.result.stopping["reason"] = f"a trial of {v.label} failed (--stop-on-failure)"
            self.adding, self.cut = False, True
        rnd.trials.append(tr)
        rnd.next += 1
        if self.cut:
            return
        if rnd.next < len(self.variants):
            self.submit(slot.node, rnd)
        elif rnd.rerun < self.rule.reruns and any(t.sentinel.get("disturbed") for t in rnd.trials):
            self._rerun(slot.node, rnd)
        else:
            self._round_finished(slot.node)

    def _rerun(self, node: str, rnd: _Round) -> None:
        """A disturbed round runs again whole, on the same node; its trials are kept, marked replaced."""
        for t in rnd.trials:
            t.replaced = True
        self.total += len(self.variants)
        self.submit(node, _Round(rnd.k, rnd.requeued, rnd.rerun + 1))
        self.saver.save()

    def _round_finished(self, node: str) -> None:
        """A round is complete on `node`: the node is free, and the rule counts the round. Once every
        ratio is precise enough, or the time is spent, no new round starts (those under way finish)."""
        self.idle.append(node)
        rule = self.rule
        # precision_reached is asked only while rounds are being added: after the stop it cannot change anything
        stop = self.rounds.finished(
            lambda: self.adding and precision_reached(self.result, rule.precision, rule.min_rounds))
        # ROUNDS: every round of the plan finished, none would start anyway; the reason stays as it is
        if stop and self.adding and self.rounds.reason in (PRECISION, TIME):
            self.result.stopping["reason"], self.adding = self.rounds.reason, False

    def _node_lost(self, slot: _Slot, v: Variant, e: BaseException) -> None:
        """Ray lost the node under the trial (it died, or was removed)."""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        self.infos[slot.node]["lost"] = True
        self.drop_node(slot, v, TrialResult.failed(v.scenario.to_dict(), v.label, None),
                       f"node {slot.node[:8]} was lost during the trial ({first})")

    def _node_broken(self, slot: _Slot, v: Variant, tr: TrialResult) -> None:
        """The node cannot start a trial's process, which another node could."""
        self.infos[slot.node]["lost"] = True
        self.infos[slot.node]["broken"] = tr.error or "no result"
        self.drop_node(slot, v, tr, f"node {slot.node[:8]} cannot run trials, though another node ran this "
                                    f"variant: {tr.error}")

    def drop_node(self, slot: _Slot, v: Variant, tr: TrialResult, reason: str) -> None:
        """The node under `slot` is lost (or cannot run trials): no more rounds go there, and its
        round starts again on another node unless it has been re-queued `requeues` times. The trial
        is recorded as lost (`reason` kept in its error), or as failed when its round is given up."""
        rnd = slot.round
        actor = self.actors.pop(slot.node, None)
        if actor is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        again = rnd.requeued < self.requeues and not self.cut
        tr.node_lost = again
        tr.error = reason if again else f"{reason}; its round was already re-queued {rnd.requeued} time(s), given up"
        self.record(tr, slot, v)
        if again:
            for t in rnd.trials:
                t.superseded = True
            self.total += len(rnd.trials)
            self.queue.append(_Round(rnd.k, rnd.requeued + 1))
        else:
            self.total -= len(self.variants) - len(rnd.trials) - 1
        if self.on_trial is not None:
            self.on_trial(self.done, self.total, v, tr)

    def _interrupted(self) -> None:
        """Ctrl-C or SIGTERM: the record says so, and the running trials stop and save."""
        self.result.interrupted = True
        self.result.stopping["reason"] = "interrupted"
        self._stop_running()

    def _stop_running(self) -> None:
        """Every running trial is asked to stop and save; what they measured is recorded.
        Every runner is told, not only those with a trial in `inflight`: a trial sent just as the
        Ctrl-C came (not yet in `inflight`), or still being started on its node, must not start and
        run for the whole grace period. Whatever has not answered after `GRACE_S` is given up on here
        (recorded as interrupted; `_end_runners` kills it)."""
        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                actor.stop.remote()
        ready: set = set()
        deadline = time.monotonic() + GRACE_S
        try:
            while len(ready) < len(self.inflight) and time.monotonic() < deadline:
                ready = set(self.ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=WAIT_S)[0])
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass
        for ref, slot in list(self.inflight.items()):
            v = self.variants[slot.round.next]
            tr = None
            if ref in ready:
                with contextlib.suppress(Exception):
                    tr = _trial_from(self.ray.get(ref, timeout=5), v)
            if tr is None:
                tr = TrialResult.failed(v.scenario.to_dict(), v.label, error=None, interrupted=True)
            self.record(tr, slot, v)


def _ran_elsewhere(result: CompareResult, v: Variant, node: str) -> bool:
    """A trial of `v` finished on another node than `node`."""
    return any(t.node.get("id") not in (None, node) for t in result.ok_trials(v.label))


class _Saver:
    """Rewrites sps.json after a trial unless the last rewrite was very recent: at most once per
    `MIN_SAVE_S`, and never more than a tenth of the time. A rewrite costs about 4 ms per trial
    already in the record (40 KB each), so on many nodes, saving after every trial would make the
    driver the bottleneck; each trial's own file is written at once, whatever this does."""

    def __init__(self, result: CompareResult, path: Path):
        self.result, self.path = result, path
        self.last, self.cost = -math.inf, 0.0

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= max(MIN_SAVE_S, 10 * self.cost):
            self.result.save(self.path)
            self.last, self.cost = time.monotonic(), time.monotonic() - now


def _trial_from(payload: dict[str, Any], v: Variant) -> TrialResult:
    code, err = payload["code"], payload["stderr"]
    if payload["trial"] is None:  # stopped while starting up (130, or SIGINT before its handler was in place)
        stopped = code in (130, -signal.SIGINT) or bool(payload.get("stopped"))
        return TrialResult.failed(v.scenario.to_dict(), v.label, None if stopped else exit_text(code, err), code,
                                  interrupted=stopped)
    tr = TrialResult.from_dict(payload["trial"])
    if code not in (0, 130) and not tr.error:
        tr.error, tr.exit_status = exit_text(code, err), code
    return tr


def complete_rounds(result: CompareResult) -> int:
    """Rounds in which every variant has a counted trial."""
    rounds = [{t.round for t in result.ok_trials(label)} for label in result.variants]
    return len(set.intersection(*rounds)) if rounds else 0
