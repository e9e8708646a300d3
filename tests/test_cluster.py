"""`compare --backend ray`: node-blocked statistics on a recorded two-node run, the CLI's usage
errors, and (with the `ray` extra) real sweeps on a local multi-node cluster started here.

tests/fixtures/records/compare-ray/sps.json is a real run on two simulated nodes of this machine:
`PYTHONPATH=bench/userenvs perfkit compare --backend ray --ray-address <2-node Cluster>
--vary env=forage:make,forage:make_twin --trials 8 --seconds 2 --reruns 0` (forage:make_twin is
the same code under another name: equal variants). Each trial's windows were cut to the first
three to keep the file small; the statistics read each trial's `sps`. The faster/slower-node cases
below scale one node's recorded SPS, in the test, so the change is visible here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.core import stats
from perfkit.records.compare import CompareResult
from perfkit.records.trial import TrialResult
from perfkit.render.report import compare_markdown
from perfkit.render.table import render_nodes, render_sps

FIXTURE = Path(__file__).parent / "fixtures" / "records" / "compare-ray" / "sps.json"
REF, TWIN = "env=forage:make", "env=forage:make_twin"


def recorded() -> CompareResult:
    return CompareResult.load(FIXTURE)


def node_ids(result: CompareResult) -> list[str]:
    return sorted(result.nodes)


def scale_node(result: CompareResult, node: str, factor: float, labels=(REF, TWIN)) -> CompareResult:
    for label in labels:
        for t in result.trials[label]:
            if t.node.get("id") == node:
                t.sps *= factor
    return result


def test_recorded_two_node_run_pairs_within_nodes_and_finds_no_difference_between_twins():
    result = recorded()
    assert result.backend == "ray" and result.multi_node and len(result.nodes) == 2
    for k in range(8):  # every round ran both variants on one node
        (a,), (b,) = ([t for t in result.trials[label] if t.round == k] for label in (REF, TWIN))
        assert a.node["id"] == b.node["id"] in result.nodes
    per_node = result.node_log_ratios(TWIN)
    assert sorted(per_node) == node_ids(result) and sum(map(len, per_node.values())) == 8
    c = result.comparison(TWIN)
    assert c.verdict == stats.SAME and c.ci_low < 1 < c.ci_high


def test_a_fast_node_and_a_slow_node_do_not_make_a_verdict_or_an_unstable_warning():
    plain = recorded()
    slow = scale_node(recorded(), node_ids(plain)[1], 0.7)  # one machine 30% slower for both variants
    pooled = stats.summarize(slow.sps(REF))
    assert pooled.unstable  # across machines the spread is large ...
    assert not any("unstable" in w for w in slow.warnings())  # ... within each machine it is not
    c, c0 = slow.comparison(TWIN), plain.comparison(TWIN)
    assert c.verdict == stats.SAME
    assert (c.ratio, c.ci_low, c.ci_high) == pytest.approx((c0.ratio, c0.ci_low, c0.ci_high))
    # Had the rounds not stayed on one node, a fast reference against a slow variant would read
    # as a regression: the same trials, compared as two independent samples across machines.
    fast_ref = [t.sps for t in slow.ok_trials(REF) if t.node["id"] == node_ids(plain)[0]]
    slow_twin = [t.sps for t in slow.ok_trials(TWIN) if t.node["id"] == node_ids(plain)[1]]
    assert stats.compare_samples(fast_ref, slow_twin, paired=False).verdict == stats.SLOWER


def test_a_round_split_across_nodes_is_left_out_of_the_pairs():
    result = recorded()
    a, b = node_ids(result)
    moved = next(t for t in result.trials[TWIN] if t.node["id"] == a)
    moved.node = {**moved.node, "id": b}
    assert sum(map(len, result.node_log_ratios(TWIN).values())) == 7


def test_nodes_that_disagree_are_named_and_shown_per_node():
    result = scale_node(recorded(), node_ids(recorded())[1], 0.85, labels=(TWIN,))  # slower on one machine only
    nb = result.node_comparisons()[TWIN]
    assert nb.nodes_disagree
    assert nb.per_node[node_ids(result)[1]].verdict == stats.SLOWER
    assert nb.per_node[node_ids(result)[0]].verdict == stats.SAME
    # The overall interval answers for these machines (blocks), whether or not they agree.
    pooled = stats.compare_node_blocked({k: v for k, v in result.node_log_ratios(TWIN).items()})
    assert nb.overall == pooled.overall and nb.overall.ratio < 0.95
    warning = next(w for w in result.warnings() if "the nodes disagree" in w)
    assert TWIN in warning and "per-node table" in warning
    table = render_nodes(result)
    assert "nodes disagree" in table.splitlines()[-1]


def test_one_node_is_the_paired_t_interval():
    d = [0.01, -0.02, 0.03, 0.0, 0.015]
    assert stats.compare_node_blocked({"n1": d}).overall == stats.compare_log_ratios(d)
    assert stats.compare_node_blocked({"n1": d}).disagree_p is None


def test_node_blocked_interval_holds_its_error_rate_across_unequal_machines():
    """Simulated sweeps on 2-4 machines of different speeds (x0.6-x1.6) with per-round noise:
    equal variants are called different about 5% of the time, and a 5% slowdown is found."""
    rng = np.random.default_rng(7)
    false, found, runs = 0, 0, 400
    for _ in range(runs):
        nodes = int(rng.integers(2, 5))
        speed = rng.uniform(0.6, 1.6, nodes)
        for effect, counter in ((0.0, "false"), (math.log(0.95), "found")):
            groups = {}
            for j in range(nodes):
                rounds = int(rng.integers(3, 7))
                base = np.log(1e5 * speed[j]) + rng.normal(0, 0.05, rounds)
                other = base + effect + rng.normal(0, 0.03, rounds)
                groups[f"n{j}"] = list(other - base)
            verdict = stats.compare_node_blocked(groups).overall.verdict
            if counter == "false":
                false += verdict != stats.SAME
            else:
                found += verdict == stats.SLOWER
    assert 0.01 <= false / runs <= 0.09
    assert found / runs >= 0.8


def test_the_per_node_table_and_the_report_show_every_node():
    result = recorded()
    text = compare_markdown(result)
    assert "## Per node (every round ran on one node" in text
    rows = render_nodes(result).splitlines()
    assert len(rows) == 2 + 2 + 1  # header, rule, two nodes, overall
    assert rows[-1].startswith("| overall (blocked by node)") and "| 8 " in rows[-1]
    r = CliRunner().invoke(main, ["report", str(FIXTURE.parent), "--out", "/tmp/perfkit-test-report-ray"])
    assert r.exit_code == 0, r.output
    assert "Per node" in r.output


def test_without_ray_the_backend_is_a_usage_error_with_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    r = CliRunner().invoke(main, ["compare", "--backend", "ray", "--vary", "wrapper=none,getattr",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "pip install 'perfkit[ray]'" in r.output


@pytest.mark.parametrize("args, message", [
    (["--ray-address", "auto"], "--ray-address is for --backend ray"),
    (["--backend", "ray", "--mode", "inprocess"], "use --mode process (or auto) with --backend ray"),
    (["--backend", "ray", "--flamegraph"], "--flamegraph is not available with --backend ray"),
    (["--backend", "slurm"], "'slurm' is not one of 'local', 'ray'"),
])
def test_backend_options_that_cannot_work_are_usage_errors(args, message, tmp_path):
    r = CliRunner().invoke(main, ["compare", "--vary", "wrapper=none,getattr", *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and message in r.output, r.output


# --- on a real local cluster (the `ray` extra) ------------------------------------------------------

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="needs the ray extra: pip install 'perfkit[ray]'")
QUICK = ["--ppo", "num_steps=16", "--ppo", "minibatch_size=512", "--num-envs", "1", "--reruns", "0"]


@pytest.fixture(scope="module")
def cluster():
    import ray

    c = _local_cluster()
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def _local_cluster(tries: int = 3):
    """A head that runs no trials and two one-CPU nodes. Ray gives each node 30 s (fixed) to
    register; on a loaded machine a node can take longer: that start is tried again, afresh."""
    from ray.cluster_utils import Cluster

    for attempt in range(tries):
        c = Cluster()
        try:
            c.add_node(num_cpus=0, include_dashboard=False)  # the head; no dashboard: fewer processes to start
            c.add_node(num_cpus=1)
            c.add_node(num_cpus=1)
            c.wait_for_nodes()
            return c
        except Exception:
            with contextlib.suppress(Exception):
                c.shutdown()
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


@needs_ray
def test_an_unreachable_address_is_a_usage_error_at_once(tmp_path):
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["compare", "--backend", "ray", "--ray-address", "127.0.0.1:9",
                                  "--vary", "wrapper=none,getattr", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nothing answers at 127.0.0.1:9" in r.output and "ray start --head" in r.output
    assert time.monotonic() - t0 < 30


@pytest.mark.slow
@needs_ray
def test_compare_on_a_two_node_cluster_gives_the_local_table_and_per_node_records(cluster, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["compare", "--backend", "ray", "--ray-address", cluster.address,
                                  "--vary", "wrapper=none,getattr", "--trials", "2", "--seconds", "1", *QUICK,
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "ray: 2 node(s)" in r.output
    result = CompareResult.load(out / "sps.json")
    assert result.backend == "ray" and len(result.nodes) == 2
    for k in range(2):
        a, b = (next(t for t in result.trials[label] if t.round == k) for label in result.variants)
        assert a.status == b.status == "ok" and a.node["id"] == b.node["id"] in result.nodes
        assert a.dispatch_s is not None and a.process_s > a.seconds
    assert {t.node["id"] for ts in result.trials.values() for t in ts} == set(result.nodes)  # both nodes worked
    for label in result.variants:  # labels wrapper=none, wrapper=getattr are their own folder names
        assert sorted(p.name for p in (out / "trials" / label).iterdir()) == ["trial-0.json", "trial-1.json"]
    # The same throughput table as a local compare: the columns, and a row per variant.
    local = CompareResult.load(Path(__file__).parent / "fixtures" / "records" / "compare-process" / "sps.json")
    def columns(text):
        return [cell.strip() for cell in text.splitlines()[0].split("|")]

    assert columns(render_sps(result)) == columns(render_sps(local))
    assert [line.split("|")[1].strip() for line in render_sps(result).splitlines()[2:]] == result.variants
    assert "## Per node" in (out / "sps.md").read_text()


@pytest.mark.slow
@needs_ray
def test_a_users_commands_compared_on_a_two_node_cluster(cluster, tmp_path):
    """compare --cmd --backend ray: each trial a fresh run of the command on a node, both sides of
    a round on one node, a hidden per-step cost called slower."""
    trainer = Path(__file__).parent / "trainers" / "counter.py"
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["compare", "--backend", "ray", "--ray-address", cluster.address,
                                  "--cmd", f"base={sys.executable} {trainer}", "--vary", "env:COST_US=0,400",
                                  "--trials", "4", "--seconds", "2", "--warmup-seconds", "1", "--reruns", "0",
                                  "--progress", "cleanrl", "--out", str(out)])
    assert r.exit_code == 0, r.output
    result = CompareResult.load(out / "sps.json")
    assert result.backend == "ray" and len(result.nodes) == 2 and result.mode == "process"
    trials = [t for ts in result.trials.values() for t in ts]
    assert len(trials) == 8 and all(t.status == "ok" for t in trials)
    assert {t.node["id"] for t in trials} == set(result.nodes)
    for k in range(4):
        a, b = (next(t for t in result.trials[label] if t.round == k) for label in result.variants)
        assert a.node["id"] == b.node["id"]
    assert result.summaries()[1].vs_reference.verdict == "slower"


@pytest.mark.slow
@needs_ray
def test_a_node_removed_mid_sweep_requeues_its_round_and_the_table_is_complete(cluster, tmp_path):
    from perfkit.core.scenario import Scenario, plan_variants
    from perfkit.engine.cluster import run_compare_ray
    from perfkit.engine.local import SubprocessRunner
    from perfkit.engine.rounds import StopRule

    victim = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    variants = plan_variants(Scenario.build({}, seed=1), [("wrapper", ["none", "getattr"])])
    runner = SubprocessRunner(seconds=1.5, ppo={"num_steps": 16, "minibatch_size": 512}, num_envs=1)
    removed = threading.Event()

    def on_dispatch(node, k, v):  # the victim's first trial: remove its node while the trial runs
        if node == victim.node_id and not removed.is_set():
            removed.set()
            threading.Timer(2.5, cluster.remove_node, args=(victim,)).start()

    result = run_compare_ray(variants, StopRule(rounds=3, reruns=0), runner, tmp_path, cluster.address,
                             on_dispatch=on_dispatch)
    assert removed.is_set()
    lost = [t for ts in result.trials.values() for t in ts if t.status == "lost"]
    assert len(lost) == 1 and lost[0].node["id"] == victim.node_id and "was lost" in lost[0].error
    assert result.nodes[victim.node_id].get("lost") is True
    for label in result.variants:  # every round complete, one of them re-run on a node that stayed
        ok = result.ok_trials(label)
        assert sorted(t.round for t in ok) == [0, 1, 2] and victim.node_id not in {t.node["id"] for t in ok}
    assert any(t.requeued == 1 for t in result.ok_trials(result.variants[0]))
    assert result.stopping["reason"] == "rounds" and not result.interrupted
    assert any("lost with their node" in w for w in result.warnings())
    assert "+1 lost with a node" in render_sps(result)


@pytest.fixture
def ctrl_c_reaches_python():
    """Python's own SIGINT handler for the test: a background job (`cmd &`, nohup) starts with
    SIGINT ignored, and a process that inherits that never sees the test's Ctrl-C."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


WAIT_S = 600  # upper bound on an event (a loaded machine starts Ray workers and trials slowly); never a race
SLACK_S = 60  # on top of the code's own deadlines, for a loaded machine


@pytest.mark.slow
@needs_ray
def test_ctrl_c_stops_the_running_trials_and_keeps_what_they_measured(cluster, tmp_path, ctrl_c_reaches_python):
    from perfkit.core.scenario import Scenario, plan_variants
    from perfkit.engine.cluster import GRACE_S, run_compare_ray
    from perfkit.engine.local import SubprocessRunner
    from perfkit.engine.rounds import StopRule

    # A checkpoint after every epoch (written just before the epoch's window is kept): a trial's
    # second checkpoint is the sign, on disk, that it has measured a window.
    variants = plan_variants(Scenario.build({"checkpoint": "epochs:1"}, seed=1), [("wrapper", ["none", "getattr"])])
    token = f"ctrl-c-{os.getpid()}-{time.monotonic_ns()}"
    runner = SubprocessRunner(seconds=600, ppo={"num_steps": 16, "minibatch_size": 512}, num_envs=1,
                              extra={"test": token})
    sent: dict[str, float] = {}
    watching, returned, lock = threading.Event(), threading.Event(), threading.Lock()

    def ctrl_c_once_both_trials_trained() -> None:
        deadline, first = time.monotonic() + WAIT_S, {}
        try:
            while time.monotonic() < deadline and not returned.is_set():
                now = {w: _version(w / "trial-checkpoints" / "latest.pt") for w in _trial_dirs(token)}
                for w, version in now.items():
                    if version is not None:
                        first.setdefault(w, version)  # the first checkpoint seen; the next one is the sign
                if len(now) == 2 and all(w in first and version != first[w] for w, version in now.items()):
                    sent["trained"] = True
                    break
                time.sleep(0.2)
        except Exception as e:  # reported below, with the compare stopped: a failure, never a hang
            sent["error"] = repr(e)
        finally:
            with lock:
                if not returned.is_set():  # never into a later test
                    sent["at"] = time.monotonic()
                    os.kill(os.getpid(), signal.SIGINT)

    def on_dispatch(node, k, v):
        if not watching.is_set():
            watching.set()
            threading.Thread(target=ctrl_c_once_both_trials_trained, daemon=True).start()

    try:
        result = run_compare_ray(variants, StopRule(rounds=2, reruns=0), runner, tmp_path, cluster.address,
                                 on_dispatch=on_dispatch)
    finally:
        with lock:
            returned.set()
    assert "error" not in sent, f"the watcher failed: {sent['error']}"
    assert sent.get("trained"), "the two trials did not both finish an epoch within WAIT_S"
    # what the code allows: the grace period for the trials to save, 5 s for the runners to end
    assert time.monotonic() - sent["at"] < GRACE_S + 5 + SLACK_S
    assert result.interrupted and result.stopping["reason"] == "interrupted"
    stopped = [t for ts in result.trials.values() for t in ts]
    assert len(stopped) == 2 and all(t.status == "interrupted" for t in stopped)  # one per node, both stopped
    assert all(t.windows for t in stopped)  # and what they measured came back
    assert CompareResult.load(tmp_path / "sps.json").interrupted
    assert not _running_trials()


@pytest.mark.slow
@needs_ray
def test_a_trial_sent_as_ctrl_c_comes_is_stopped_at_once_not_after_the_grace_period(cluster, tmp_path, monkeypatch,
                                                                                    ctrl_c_reaches_python):
    """Ctrl-C the moment the first trial is sent: its runner gets the stop while the trial's
    process is still being started (or before), and no trial may start and run on after it."""
    from perfkit.core.scenario import Scenario, plan_variants
    from perfkit.engine import cluster as ray_backend
    from perfkit.engine.local import SubprocessRunner
    from perfkit.engine.rounds import StopRule

    monkeypatch.setattr(ray_backend, "GRACE_S", 150.0)  # had the stop been lost, the wait would be this long
    variants = plan_variants(Scenario.build({}, seed=1), [("wrapper", ["none", "getattr"])])
    runner = SubprocessRunner(seconds=600, ppo={"num_steps": 16, "minibatch_size": 512}, num_envs=1)
    sent: dict[str, float] = {}

    def on_dispatch(node, k, v):
        if not sent:
            sent["at"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)  # in this (the main) thread: raised right here

    result = ray_backend.run_compare_ray(variants, StopRule(rounds=2, reruns=0), runner, tmp_path, cluster.address,
                                         on_dispatch=on_dispatch)
    assert time.monotonic() - sent["at"] < ray_backend.GRACE_S / 2
    assert result.interrupted
    (stopped,) = [t for ts in result.trials.values() for t in ts]
    assert stopped.status == "interrupted" and not stopped.windows, (stopped.status, stopped.error, stopped.exit_status)
    assert not _running_trials()


def _version(path: Path) -> tuple[int, int] | None:
    """Which copy of a file that is replaced whole each time (a new inode, a new mtime), None if none yet."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _trial_dirs(token: str) -> list[Path]:
    """The work folders of the running trials whose spec carries `token` (this test's trials)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if "perfkit.engine.trial" in args and len(args) >= 2:
            try:
                if token in Path(args[-2]).read_text():
                    found.append(Path(args[-2]).parent)
            except (OSError, ValueError):  # not a spec: gone, a directory, not text
                pass
    return found


def _running_trials() -> list[str]:
    """Trial processes the Ray runners started (their spec lies in a `perfkit-trial-` temp dir):
    other perfkit runs on the machine are not this test's."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "-m perfkit.engine.trial" in line and "perfkit-trial-" in line]


def test_one_round_per_node_is_an_interval_over_the_machines():
    """More nodes than rounds: no spread within a node, so the rounds' ratios vary as machines do."""
    d = {"n1": [0.01], "n2": [-0.02], "n3": [0.03], "n4": [0.0]}
    nb = stats.compare_node_blocked(d)
    assert nb.overall == stats.compare_log_ratios([0.01, -0.02, 0.03, 0.0]) and nb.disagree_p is None


# --- the scheduler on a scripted cluster (no Ray) -----------------------------------------------------

class _Method:
    def __init__(self, fn):
        self.remote = fn


class FakeRay:
    """Just enough of `ray` for the driver's scheduler: every node's runner answers from a script
    (`outcome(node, spec, n)` -> payload dict, or an exception to raise), results arrive in the
    order the trials were sent."""

    class exceptions:
        class RayError(Exception):
            pass

        class RayActorError(RayError):
            pass

    def __init__(self, outcome):
        self.outcome, self.pending, self.sent, self.killed, self.modules = outcome, [], [], [], []

    def actor(self, node):
        def run(spec, module="perfkit.engine.trial"):
            ref = object()
            self.modules.append(module)
            self.pending.append((ref, node, spec))
            self.sent.append(node)
            return ref
        return type("Actor", (), {"run": _Method(run), "stop": _Method(lambda: None), "kill": _Method(lambda: None),
                                  "node": node})()

    def wait(self, refs, num_returns=1, timeout=None):
        return [r for r, _, _ in self.pending if r in refs][:num_returns], []

    def get(self, ref, timeout=None):
        i = next(i for i, (r, _, _) in enumerate(self.pending) if r is ref)
        _, node, spec = self.pending.pop(i)
        got = self.outcome(node, spec, self.sent.count(node))
        if isinstance(got, BaseException):
            raise got
        return got

    def kill(self, actor):
        self.killed.append(actor.node)


TRIAL = recorded().trials[REF][0]


def _payload(spec, sps=1e5, error=None):
    t = TrialResult.from_dict({**TRIAL.to_dict(), "sps": sps, "error": error, "sentinel": {}, "node": {},
                               "round": None})
    return {"code": 1 if error else 0, "stderr": "", "trial": t.to_dict(), "wall_s": 3.0}


def _sweep(outcome, nodes=("good", "bad"), rounds=4, requeues=2, stop_on_failure=False, tmp_path=None):
    from perfkit.core.scenario import Scenario, plan_variants
    from perfkit.engine.cluster import Scheduler
    from perfkit.engine.local import SubprocessRunner
    from perfkit.engine.rounds import StopRule

    fake = FakeRay(outcome)
    variants = plan_variants(Scenario.build({}, seed=1), [("wrapper", ["none", "getattr"])])
    infos = {n: {"id": n, "host": "h"} for n in nodes}
    seen = []
    result = Scheduler(ray=fake, actors={n: fake.actor(n) for n in nodes}, infos=infos, variants=variants,
                       rule=StopRule(rounds=rounds, reruns=0), runner=SubprocessRunner(seconds=1), run_dir=tmp_path,
                       on_trial=lambda i, n, v, tr: seen.append((i, n, tr.status)), stop_on_failure=stop_on_failure,
                       requeues=requeues, on_dispatch=None, clock=time.monotonic).run()
    return result, fake, seen


def test_a_node_that_cannot_start_trials_is_dropped_and_its_round_runs_elsewhere(tmp_path):
    def outcome(node, spec, n):
        if node == "bad":  # perfkit not importable there: no result at all
            return {"code": 1, "stderr": "ModuleNotFoundError: No module named 'perfkit'", "trial": None, "wall_s": 0.1}
        return _payload(spec)

    result, fake, seen = _sweep(outcome, tmp_path=tmp_path)
    assert fake.sent.count("bad") == 1 and fake.killed == ["bad"]
    assert _complete(result) == 4 and all(t.node["id"] == "good" for t in result.ok_trials("wrapper=none"))
    (lost,) = [t for ts in result.trials.values() for t in ts if t.status == "lost"]
    assert "cannot run trials" in lost.error and "No module named 'perfkit'" in lost.error
    assert result.nodes["bad"]["lost"] and "perfkit" in result.nodes["bad"]["broken"]
    assert seen[-1][0] == seen[-1][1] == 8  # progress ends at its total


def test_a_variant_that_fails_everywhere_is_a_failed_trial_not_a_broken_node(tmp_path):
    def outcome(node, spec, n):
        if spec["scenario"]["values"]["wrapper"] == "getattr":
            return {"code": 1, "stderr": "ImportError: boom", "trial": None, "wall_s": 0.1}
        return _payload(spec)

    result, fake, _ = _sweep(outcome, tmp_path=tmp_path)
    assert not fake.killed and len(result.failed("wrapper=getattr")) == 4
    assert len(result.ok_trials("wrapper=none")) == 4


def test_when_every_node_is_lost_the_sweep_says_it_is_incomplete(tmp_path):
    def outcome(node, spec, n):
        return FakeRay.exceptions.RayActorError(f"{node} died")

    result, fake, _ = _sweep(outcome, tmp_path=tmp_path)
    assert sorted(t.status for ts in result.trials.values() for t in ts) == ["lost", "lost"]
    assert result.stopping["reason"] == "every node was lost"
    assert any(w.startswith("incomplete: every node was lost, after 0 of 4 rounds") for w in result.warnings())
    assert sorted(fake.killed) == ["bad", "good"]


def test_a_round_is_requeued_at_most_requeues_times(tmp_path):
    def outcome(node, spec, n):
        return FakeRay.exceptions.RayActorError("node died") if node == "bad" else _payload(spec)

    result, fake, _ = _sweep(outcome, requeues=0, tmp_path=tmp_path)
    (given_up,) = [t for ts in result.trials.values() for t in ts if t.status != "ok"]
    assert given_up.status == "failed" and given_up.round == 1 and "given up" in given_up.error
    assert _complete(result) == 3 and result.stopping["reason"] == "rounds"  # rounds 0, 2, 3 on the good node


def test_stop_on_failure_starts_nothing_after_the_failure(tmp_path):
    def outcome(node, spec, n):
        return _payload(spec, error="env raised") if node == "bad" else _payload(spec)

    result, fake, _ = _sweep(outcome, stop_on_failure=True, tmp_path=tmp_path)
    assert fake.sent == ["good", "bad", "good"]  # round 0 on good finishes its trial under way, nothing more
    assert result.stopping["reason"].startswith("a trial of wrapper=none failed")


def _complete(result):
    from perfkit.engine.cluster import complete_rounds

    return complete_rounds(result)


def test_a_cluster_without_a_node_for_trials_is_a_clear_error(tmp_path, monkeypatch):
    from perfkit.engine import cluster

    head_only = type("Ray", (), {"nodes": staticmethod(lambda: [{"NodeID": "h", "Alive": True,
                                                                 "Resources": {"memory": 1.0}}])})()
    monkeypatch.setattr(cluster, "connect", lambda address: (head_only, False))
    with pytest.raises(cluster.ClusterError, match="no node with CPUs to run trials on"):
        cluster.run_compare_ray([], None, None, tmp_path)


def test_the_trials_on_a_node_import_this_perfkit_and_its_envs(tmp_path, monkeypatch):
    from perfkit.engine.cluster import driver_pythonpath

    monkeypatch.chdir(tmp_path)
    first = Path(driver_pythonpath()[0])
    assert (first / "perfkit" / "__init__.py").is_file() and (first / "envs" / "registry.py").is_file()


def test_commands_run_on_the_nodes_as_fresh_command_trials(tmp_path, monkeypatch):
    """compare --cmd --backend ray: every trial is `python -m perfkit.engine.command` on its node,
    told the command (in this machine's working directory), its seconds, warm-up and progress."""
    from perfkit.core.command import plan_commands
    from perfkit.engine.cluster import Scheduler
    from perfkit.engine.command import CommandRunner
    from perfkit.engine.rounds import StopRule

    monkeypatch.chdir(tmp_path)
    specs = []

    def outcome(node, spec, n):
        specs.append(spec)
        t = _payload(spec)
        t["trial"] = {**t["trial"], "scenario": spec["command"], "label": spec["label"]}
        return t

    fake = FakeRay(outcome)
    variants = plan_commands(["base=python train.py", "fast=python train.py --fast"], [])
    runner = CommandRunner(seconds=4.0, warmup_seconds=1.5, progress="cleanrl", metrics=("episodic_return",))
    result = Scheduler(ray=fake, actors={n: fake.actor(n) for n in ("n1", "n2")},
                       infos={n: {"id": n, "host": "h"} for n in ("n1", "n2")}, variants=variants,
                       rule=StopRule(rounds=2, reruns=0), runner=runner, run_dir=tmp_path / "run",
                       on_trial=None, stop_on_failure=False, requeues=2, on_dispatch=None, clock=time.monotonic).run()
    assert set(fake.modules) == {"perfkit.engine.command"} and len(fake.modules) == 4
    assert {s["command"]["command"] for s in specs} == {"python train.py", "python train.py --fast"}
    assert all(s["seconds"] == 4.0 and s["warmup_seconds"] == 1.5 and s["progress"] == "cleanrl"
               and s["metrics"] == ["episodic_return"] and s["command"]["cwd"] == str(tmp_path) for s in specs)
    assert result.backend == "ray" and all(len(result.ok_trials(v.label)) == 2 for v in variants)


def test_a_nodes_command_trial_measures_seconds_after_its_warm_up(tmp_path):
    """What a node runs: `perfkit.engine.command` with a compare spec runs the command for its
    warm-up and steady seconds and records the trial (the SPS read from its progress lines)."""
    from perfkit.engine.command import main as command_main

    trainer = Path(__file__).parent / "trainers" / "counter.py"
    spec = {"command": {"workload": "command", "name": "base", "command": f"{sys.executable} {trainer}", "env": {},
                        "cwd": str(tmp_path)},
            "label": "base", "seconds": 1.5, "warmup_seconds": 0.5, "progress": "cleanrl", "metrics": [],
            "start_timeout": 60.0, "min_window_s": 0.25, "user_pythonpath": None}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert command_main([str(tmp_path / "spec.json"), str(tmp_path / "trial.json")]) == 0
    tr = TrialResult.load(tmp_path / "trial.json")
    assert tr.error is None and tr.sps > 0 and tr.label == "base" and len(tr.windows) >= 2


def test_commands_in_turns_cannot_go_to_a_cluster():
    from click.testing import CliRunner

    from perfkit.cli.main import main

    for extra in (["--mode", "interleave"], ["--processes", "3"]):
        r = CliRunner().invoke(main, ["compare", "--cmd", "a=python x.py", "--cmd", "b=python y.py",
                                      "--backend", "ray", *extra])
        assert r.exit_code == 2 and "--backend ray runs each trial as a fresh run" in r.output
    r = CliRunner().invoke(main, ["compare", "--cmd", "a=python x.py", "--cmd", "b=python y.py",
                                  "--ray-address", "127.0.0.1:1"])
    assert r.exit_code == 2 and "--ray-address is for --backend ray" in r.output
