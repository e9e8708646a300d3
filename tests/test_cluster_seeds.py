"""perfkit learn --backend ray: seeds on a cluster's slots (engine/cluster_seeds.py).

The scheduler runs on a scripted cluster (no Ray): which slot gets which seed, a node lost under a
seed, a node that cannot start trials, every node gone, Ctrl-C. One slow test runs `perfkit learn
--backend ray --cmd` on a real two-node Ray cluster of this machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes import fake_trial
from perfkit.cli.main import main
from perfkit.engine.cluster_seeds import SeedScheduler, Slot, slot_spec, slots_for
from perfkit.engine.seeds import TrialJob
from perfkit.records.learning import LearnResult
from perfkit.records.trial import TrialResult


class _Method:
    def __init__(self, fn):
        self.remote = fn


class FakeRay:
    """Enough of `ray` for the seed scheduler: a slot's runner answers from a script
    (`outcome(node, spec, module)` -> payload, or an exception to raise), results in the order sent."""

    class exceptions:
        class RayError(Exception):
            pass

        class RayActorError(RayError):
            pass

    def __init__(self, outcome, interrupt_after: int | None = None):
        self.outcome, self.pending, self.sent, self.killed, self.stopped = outcome, [], [], [], []
        self.interrupt_after, self.waits = interrupt_after, 0

    def slot(self, node: str, i: int, cores: int = 1) -> Slot:
        def run(spec, module):
            ref = object()
            self.pending.append((ref, node, spec, module))
            self.sent.append((node, spec, module))
            return ref

        actor = type("Actor", (), {"run": _Method(run), "stop": _Method(lambda: self.stopped.append(node)),
                                   "kill": _Method(lambda: None), "node": node})()
        return Slot(f"{node}/{i}", node, cores, 0.0, actor)

    def wait(self, refs, num_returns=1, timeout=None):
        self.waits += 1
        if self.interrupt_after is not None and self.waits > self.interrupt_after:
            self.interrupt_after = None
            raise KeyboardInterrupt
        return [r for r, *_ in self.pending if r in refs][:num_returns], []

    def get(self, ref, timeout=None):
        i = next(i for i, (r, *_) in enumerate(self.pending) if r is ref)
        _, node, spec, module = self.pending.pop(i)
        got = self.outcome(node, spec, module)
        if isinstance(got, BaseException):
            raise got
        return got

    def kill(self, actor):
        self.killed.append(actor.node)


def _payload(seed: int, code: int = 0, trial: bool = True, stderr: str = "") -> dict:
    t = fake_trial("a", 1e4)
    t.scenario = {**t.scenario, "seed": seed}
    return {"code": code, "stderr": stderr, "trial": t.to_dict() if trial else None, "wall_s": 2.0}


def _jobs(tmp_path: Path, n: int, cmd: bool = False) -> list[TrialJob]:
    jobs = []
    for s in range(n):
        spec = {"scenario": {"seed": s}, "steps": 1000, "cores": 2}
        if cmd:
            spec = {"command": {"name": "a", "command": "python t.py", "env": {"OMP_NUM_THREADS": "2",
                                                                              "MKL_NUM_THREADS": "7"},
                                "cwd": None}, "perfkit_threads": ["OMP_NUM_THREADS"], "seed": s}
        jobs.append(TrialJob(spec, tmp_path / "trials" / "a" / f"seed-{s}.json", {"seed": s}, "a",
                             module="perfkit.engine.command" if cmd else "perfkit.engine.trial"))
    return jobs


def _schedule(fake, slots, jobs, requeues=2):
    infos = {s.node: {"id": s.node, "host": f"host-{s.node}"} for s in slots}
    done = []
    sched = SeedScheduler(fake, slots, infos, requeues=requeues, grace_s=1.0, cwd="/driver/cwd")
    results = sched.run(jobs, lambda job, tr: done.append((job.out.name, tr.status)))
    return results, done, sched, infos


def test_every_seed_runs_once_on_some_slot_in_job_order_with_its_record_and_node(tmp_path):
    fake = FakeRay(lambda node, spec, module: _payload(spec["scenario"]["seed"]))
    slots = [fake.slot("n1", 0, cores=4), fake.slot("n1", 1, cores=4), fake.slot("n2", 0, cores=8)]
    jobs = _jobs(tmp_path, 7)
    results, done, _, _ = _schedule(fake, slots, jobs)
    assert [r.scenario["seed"] for r in results] == list(range(7))
    assert all(r.status == "ok" and r.requeued == 0 for r in results)
    assert len(done) == 7 and all(status == "ok" for _, status in done)
    assert {r.node["id"] for r in results} == {"n1", "n2"}
    # each slot's trial is told the slot's own cores, whatever the driver planned
    assert sorted({(node, spec["cores"]) for node, spec, _ in fake.sent}) == [("n1", 4), ("n2", 8)]
    assert all(module == "perfkit.engine.trial" for *_, module in fake.sent)
    for job, r in zip(jobs, results, strict=True):
        assert TrialResult.load(job.out).scenario["seed"] == r.scenario["seed"]


def test_a_commands_thread_variables_follow_the_slot_but_the_users_own_stay(tmp_path):
    slot = Slot("n/0", "n", 3, 0.0, None)
    spec = slot_spec(_jobs(tmp_path, 1, cmd=True)[0].spec, slot, "/driver/cwd")
    assert spec["command"]["env"] == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "7"}
    assert spec["command"]["cwd"] == "/driver/cwd"  # a command runs where the driver was, as locally
    given = {"command": {"name": "a", "command": "x", "env": {}, "cwd": "/mine"}, "perfkit_threads": []}
    assert slot_spec(given, slot, "/driver/cwd")["command"]["cwd"] == "/mine"


@pytest.mark.parametrize("cpus,gpus,per_node,workers,expected", [
    (16, 0, None, 0, 16), (16, 0, None, 3, 4), (16, 0, 2, 3, 2), (1, 0, None, 3, 1), (16, 1, None, 0, 4),
    (16, 2, None, 0, 8), (2, 1, None, 0, 2),
])
def test_seeds_per_node(cpus, gpus, per_node, workers, expected):
    assert slots_for(cpus, gpus, per_node, workers) == expected


def test_a_seed_lost_with_its_node_runs_again_elsewhere_and_the_node_leaves(tmp_path):
    def outcome(node, spec, module):
        return FakeRay.exceptions.RayActorError("node died") if node == "bad" else _payload(spec["scenario"]["seed"])

    fake = FakeRay(outcome)
    slots = [fake.slot("bad", 0), fake.slot("bad", 1), fake.slot("good", 0)]
    results, done, sched, infos = _schedule(fake, slots, _jobs(tmp_path, 4))
    assert [r.status for r in results] == ["ok"] * 4 and all(r.node["id"] == "good" for r in results)
    assert sum(r.requeued for r in results) == 2  # the two seeds sent to the bad node's two slots
    assert infos["bad"]["lost"] and "lost during a trial" in infos["bad"]["why"]
    assert [s.node for s in sched.slots] == ["good"] and fake.killed.count("bad") == 2
    assert [n for n, *_ in fake.sent].count("bad") == 2  # nothing more went there once one was lost
    assert len(done) == 4  # on_done once per seed: the lost attempt is not a result


def test_a_seed_is_given_up_after_requeues_and_every_node_gone_is_said(tmp_path):
    fake = FakeRay(lambda node, spec, module: FakeRay.exceptions.RayActorError(f"{node} died"))
    slots = [fake.slot("n1", 0), fake.slot("n2", 0), fake.slot("n3", 0)]
    results, done, _, _ = _schedule(fake, slots, _jobs(tmp_path, 1), requeues=1)
    assert results[0].status == "failed" and "given up" in results[0].error and results[0].requeued == 1
    assert [n for n, *_ in fake.sent] == ["n1", "n2"]  # the first try and one more; n3 was not needed
    fake = FakeRay(lambda node, spec, module: FakeRay.exceptions.RayActorError(f"{node} died"))
    results, done, _, _ = _schedule(fake, [fake.slot("n1", 0), fake.slot("n2", 0)], _jobs(tmp_path / "b", 3))
    assert [r.status for r in results] == ["failed"] * 3
    assert all("every node of the Ray cluster was lost" in r.error for r in results)
    assert len(done) == 3 and all(TrialResult.load(j.out).status == "failed" for j in _jobs(tmp_path / "b", 3))


def test_a_node_that_cannot_start_trials_is_dropped_once_another_node_ran_one(tmp_path):
    def outcome(node, spec, module):
        if node == "broken":
            return _payload(0, code=1, trial=False, stderr="ModuleNotFoundError: No module named 'mypkg'")
        return _payload(spec["scenario"]["seed"])

    fake = FakeRay(outcome)
    slots = [fake.slot("good", 0), fake.slot("broken", 0)]
    results, _, _, infos = _schedule(fake, slots, _jobs(tmp_path, 4))
    assert [r.status for r in results] == ["ok"] * 4 and all(r.node["id"] == "good" for r in results)
    assert infos["broken"]["lost"] and "mypkg" in infos["broken"]["why"]


def test_a_seed_that_fails_everywhere_is_a_failed_seed_not_a_broken_cluster(tmp_path):
    fake = FakeRay(lambda node, spec, module: _payload(0, code=1, trial=False, stderr="ValueError: bad env"))
    slots = [fake.slot("n1", 0), fake.slot("n2", 0)]
    results, _, sched, infos = _schedule(fake, slots, _jobs(tmp_path, 3))
    assert [r.status for r in results] == ["failed"] * 3 and "bad env" in results[0].error
    assert len(sched.slots) == 2 and not any(i.get("lost") for i in infos.values())
    assert (tmp_path / "trials" / "a" / "seed-0.stderr").read_text() == "ValueError: bad env"


def test_ctrl_c_stops_every_slot_and_hands_back_what_finished(tmp_path):
    fake = FakeRay(lambda node, spec, module: _payload(spec["scenario"]["seed"]), interrupt_after=2)
    slots = [fake.slot("n1", 0), fake.slot("n2", 0)]
    jobs = _jobs(tmp_path, 6)
    with pytest.raises(KeyboardInterrupt) as info:
        _schedule(fake, slots, jobs)
    got = info.value.results
    assert sorted(fake.stopped) == ["n1", "n2"]  # every slot told to stop, and to start nothing more
    finished = [tr for _, tr in got if not tr.interrupted]
    interrupted = [tr for _, tr in got if tr.interrupted]
    assert len(finished) == 2 and len(interrupted) == 2  # the two running at the Ctrl-C, stopped and kept
    assert len(got) == 4  # the seeds never started are left out, as locally
    assert all(job.out.exists() for job, _ in got)


def test_backend_ray_input_errors_are_exit_2_before_anything_runs(tmp_path, monkeypatch):
    r = CliRunner().invoke(main, ["learn", "--ray-address", "auto", "--vary", "preset=basic_easy_shaped,make_arena",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--ray-address is for --backend ray" in r.output
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    r = CliRunner().invoke(main, ["learn", "--backend", "ray", "--vary", "preset=basic_easy_shaped,make_arena",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "pip install 'perfkit[ray]'" in r.output
    assert not (tmp_path / "o").exists()


needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="needs the ray extra: pip install 'perfkit[ray]'")
LEARNER = Path(__file__).parent / "trainers" / "learner.py"
CMD = f"{sys.executable} {LEARNER} --seed {{seed}}"


@needs_ray
def test_an_unreachable_cluster_is_exit_2_and_leaves_nothing(tmp_path):
    r = CliRunner().invoke(main, ["learn", "--backend", "ray", "--ray-address", "127.0.0.1:9", "--cmd", f"a={CMD}",
                                  "--cmd", f"b={CMD} --lr 0.5", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nothing answers at 127.0.0.1:9" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@needs_ray
def test_learn_on_a_two_node_cluster_spreads_the_seeds_and_gives_the_local_verdict(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster()
    try:
        c.add_node(num_cpus=0, include_dashboard=False)  # the head runs no seeds
        c.add_node(num_cpus=2)
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        out = tmp_path / "run"
        r = CliRunner().invoke(main, ["learn", "--backend", "ray", "--ray-address", c.address,
                                      "--cmd", f"base={CMD}", "--cmd", f"slow={CMD} --lr 0.15", "--steps", "40000",
                                      "--seeds", "4", "--progress", "cleanrl", "--metric", "episodic_return",
                                      "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert "on 2 Ray node(s)" in r.output and "2 seed(s) at once" in r.output
        result = LearnResult.load(out / "learn.json")
        assert result.backend == "ray" and len(result.nodes) == 2 and result.parallel == 3
        trials = [t for ts in result.trials.values() for t in ts]
        assert len(trials) == 8 and all(result.complete(t) for t in trials)
        assert {t.node["id"] for t in trials} == set(result.nodes)  # both nodes trained seeds
        assert result.compare("slow", "episodic_return").verdict == "learns worse"
        assert "## Nodes (--backend ray: 2)" in (out / "learn.md").read_text()
        assert (out / "trials" / "slow" / "seed-1.json").exists()
    finally:
        with contextlib.suppress(Exception):
            if ray.is_initialized():
                ray.shutdown()
        c.shutdown()
