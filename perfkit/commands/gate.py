"""The CI gate: checks parsed from text, measured side by side, failing only on significant
regressions beyond their threshold.

Two kinds of check:
  sps(wrapper=getattr) >= 0.98 * sps(wrapper=none)   relative: both measured in this run, interleaved
  sps(wrapper=getattr) >= 0.90 * baseline            against results/baseline/gate.json, with SPS
                                                     divided by a reference workload measured in the
                                                     same round, so a slower machine does not fail

The gate's workload is a *rollout*: the scenario's vector env stepped with actions from the policy
(forward pass only, no learning), in short blocks that rotate between all workloads every round.
Blocks next to each other see the same machine, which is what makes a 2-5% regression visible on a
runner whose speed varies 10-30% between jobs. A check fails only when the upper end of the 95%
interval of the ratio is below the threshold; otherwise it reports "ok" or "within noise" with the
interval. With a precision (`GateRule`), rounds are added until every check's measured ratio is
known to +-P, within a time budget: the rule looks at the interval's width only, never at its side
of the threshold, so stopping early does not make a failure more or less likely.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from perfkit.core import stats
from perfkit.core.scenario import Scenario, ScenarioError, parse_assignment
from perfkit.engine.rounds import ROUNDS, Rounds, StopRule
from perfkit.records.gate import CheckResult, GateRecord, GateRule, Measurement
from perfkit.records.store import ResultsError, read_json, write_json

BASELINE = "baseline"  # the right-hand side of a check against the stored baseline file
_CHECK = re.compile(r"^\s*sps\(([^)]*)\)\s*>=\s*([0-9]*\.?[0-9]+)\s*\*\s*(?:sps\(([^)]*)\)|(baseline))\s*$")


class GateError(ValueError):
    """Bad check text, unknown axis, or a missing/unreadable baseline: exit 2."""


def _side(text: str) -> tuple[str, Scenario]:
    """One side of a check: its canonical `axis=value,...` label for the axes it names (validated,
    in the axis table's order; `sps()` with no axes is "defaults") and the full scenario it
    resolves to."""
    overrides = _with_env_defaults(dict(parse_assignment(part) for part in text.split(",") if part.strip()))
    sc = Scenario.build(overrides)
    return (sc.label([a for a, _ in sc.values if a in overrides]) if overrides else "defaults"), sc


def _with_env_defaults(overrides: dict[str, str]) -> dict[str, str]:
    """As `perfkit compare` does: a user's env without set_env_config/get_env_config (which the
    curriculum wrapper calls) runs unwrapped unless the check names a wrapper; the label then says
    wrapper=none. An env that cannot be built is a GateError naming it."""
    if "env" not in overrides or "wrapper" in overrides:
        return overrides
    from envs.registry import EnvSpecError, check_env

    try:
        found = _ENV_CHECKS.get(overrides["env"]) or _ENV_CHECKS.setdefault(overrides["env"],
                                                                           check_env(overrides["env"]))
    except EnvSpecError as e:
        raise ScenarioError(str(e)) from None
    return overrides if found.has_set_env_config else {**overrides, "wrapper": "none"}


_ENV_CHECKS: dict = {}  # env value -> EnvCheck: building a user's env once per process is enough


@dataclass(frozen=True)
class Check:
    text: str
    lhs: str
    factor: float
    rhs: str  # a label, or "baseline"

    @property
    def against_baseline(self) -> bool:
        return self.rhs == BASELINE


def parse_check(text: str) -> Check:
    m = _CHECK.match(text)
    if not m:
        raise GateError(f"cannot parse check {text!r}; expected 'sps(AXIS=V,...) >= F * sps(AXIS=V,...)' "
                        "or 'sps(AXIS=V,...) >= F * baseline'")
    factor = float(m.group(2))
    if not 0 < factor <= 2:
        raise GateError(f"check {text!r}: factor {factor} must be in (0, 2]")
    try:
        lhs, lhs_scenario = _side(m.group(1))
        rhs, rhs_scenario = (BASELINE, None) if m.group(4) else _side(m.group(3))
    except ScenarioError as e:
        raise GateError(f"check {text!r}: {e}") from None
    # Compare what the sides resolve to, not their text: `sps()` and `sps(wrapper=getattr)` (the
    # default) are one workload, and a check of a workload against itself always passes.
    if lhs_scenario == rhs_scenario:
        raise GateError(f"check {text!r} compares a scenario with itself (both sides are {lhs_scenario.label()})")
    return Check(text.strip(), lhs, factor, rhs)


def workload_label(text: str) -> str:
    """The canonical label of `sps(TEXT)`, as checks and gate.json name the workload."""
    try:
        return _side(text)[0]
    except ScenarioError as e:
        raise GateError(f"sps({text}): {e}") from None


def scenario_for(label: str, seed: int = 1) -> Scenario:
    overrides = {} if label == "defaults" else dict(parse_assignment(p) for p in label.split(","))
    return Scenario.build(overrides, seed=seed)


MIN_BASELINE_RUNS = 2  # the prediction interval has K-1 degrees of freedom: one run gives no interval


def check_baseline(baseline: object, labels: Sequence[str] = (), source: str = "baseline") -> None:
    """Raise GateError unless `baseline` can decide checks of `labels`: an object with at least
    MIN_BASELINE_RUNS runs, each holding a non-empty list of finite, positive scores per label.
    Anything less gives a NaN interval, which would otherwise read as "within noise" and pass."""
    fix = "re-measure it with `perfkit gate --update-baseline`"
    if not isinstance(baseline, dict):
        raise GateError(f"{source}: expected a JSON object at the top level, got {type(baseline).__name__}; {fix}")
    runs = baseline.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("scores"), dict)
                                             for r in runs):
        raise GateError(f"{source}: 'runs' must be a list of objects with 'scores'; {fix}")
    if len(runs) < MIN_BASELINE_RUNS:
        raise GateError(f"{source} holds {len(runs)} run(s), need at least {MIN_BASELINE_RUNS} (their spread is "
                        "what a baseline check allows for); re-measure it with "
                        "`perfkit gate --update-baseline --baseline-runs 5`")
    for label in labels:
        if any(label not in run["scores"] for run in runs):
            raise GateError(f"{source} has no entry for {label!r}; run `perfkit gate --update-baseline` "
                            "with this check")
        for k, run in enumerate(runs):
            xs = run["scores"][label]
            if not (isinstance(xs, list) and xs and all(_positive_number(x) for x in xs)):
                raise GateError(f"{source}: run {k + 1} scores for {label!r} must be a non-empty list of finite "
                                f"numbers > 0, got {str(xs)[:80]}; {fix}")


def _positive_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def evaluate(check: Check, samples: dict[str, list[float]], reference: list[float],
             baseline: dict | None = None) -> CheckResult:
    """Decide one check from per-round SPS samples (and the stored baseline for baseline checks)."""
    lhs = samples[check.lhs]
    detectable = None
    if check.against_baseline:
        check_baseline(baseline, [check.lhs])
        run_means = _run_means(baseline, check.lhs)
        c = stats.compare_to_runs(run_means, _scores(lhs, reference))
        floor = stats.baseline_floor(run_means)
        detectable = check.factor / floor if math.isfinite(floor) else None
    else:
        c = stats.compare_samples(samples[check.rhs], lhs, paired=True)
    # Last line of defence: NaN compares False both ways, so an undefined interval would fall
    # through to "within noise" and pass the gate. A check that cannot be decided is an error.
    if not all(math.isfinite(v) for v in (c.ratio, c.ci_low, c.ci_high)):
        raise GateError(f"check {check.text!r} cannot be decided: ratio {c.ratio:.3f}, 95% CI [{c.ci_low:.3f}, "
                        f"{c.ci_high:.3f}] ({c.verdict}); it needs at least 2 rounds and SPS > 0 in every block")
    if c.ci_high < check.factor:
        status = "FAIL"
    elif c.ci_low >= check.factor:
        status = "ok"
    else:
        status = "within noise"
    return CheckResult(check.text, c.ratio, c.ci_low, c.ci_high, check.factor, status, detectable)


def _scores(sps: Sequence[float], reference: Sequence[float]) -> list[float]:
    """SPS per unit of the reference workload timed in the same round."""
    return [s / r for s, r in zip(sps, reference, strict=True)]


def _run_means(baseline: dict, label: str) -> list[float]:
    return [float(np.exp(np.mean(np.log(run["scores"][label])))) for run in baseline["runs"]]


def own_half_width(check: Check, samples: dict[str, list[float]], reference: list[float]) -> float:
    """How well this run alone knows the check's ratio: the relative half-width of the paired
    interval (relative checks) or of the interval of this run's mean score (baseline checks, whose
    other part, the spread between the baseline's processes, no number of rounds can narrow).
    inf with fewer than 2 rounds."""
    lhs = np.log(np.asarray(samples[check.lhs], float))
    if check.against_baseline:
        d = lhs - np.log(np.asarray(reference, float))
    else:
        d = lhs - np.log(np.asarray(samples[check.rhs], float))
    return stats.half_width(stats.compare_log_ratios(list(d)))


# -- measurement ------------------------------------------------------------------------------

def reference_workload(repeats: int = 40) -> float:
    """Operations per second of a fixed mix (a 96x1210 @ 1210x128 matmul as in the policy's first
    layer, plus a pure-Python loop): it tracks how fast this machine runs the rollout's kinds of
    work, independent of perfkit's code."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.rand((96, 1210), generator=g)
    w = torch.rand((1210, 128), generator=g)
    t0 = time.perf_counter()
    for _ in range(repeats):
        (x @ w).relu_()
        acc = 0
        for i in range(3000):
            acc += i * i
    return repeats / (time.perf_counter() - t0)


class RolloutWorkload:
    """A scenario's vector env plus the policy's forward pass, stepped in timed blocks."""

    def __init__(self, scenario: Scenario, num_envs: int = 4):
        import torch

        from envs.registry import make_creator
        from perfkit.train import vecenv as vec
        from perfkit.train.ppo import Policy, sample_actions

        self._torch, self._sample = torch, sample_actions
        values = dict(scenario.values)
        self.vecenv = vec.make(make_creator(values), vec.plan("serial", num_envs), seed=scenario.seed)
        torch.manual_seed(scenario.seed)
        self.policy = Policy(self.vecenv.single_observation_space.shape, self.vecenv.single_action_space.n,
                             obs_scale=float(getattr(self.vecenv.driver_env, "obs_scale", 1.0)))
        self.gen = torch.Generator().manual_seed(scenario.seed)
        self.vecenv.async_reset(scenario.seed)
        self.obs = self.vecenv.recv()[0]

    def block(self, steps: int) -> float:
        """Agent-steps/s over `steps` rollout steps."""
        torch = self._torch
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(steps):
                logits, _ = self.policy(torch.from_numpy(self.obs))
                action, _ = self._sample(logits, self.gen)
                self.vecenv.send(action.to(torch.int32).numpy())
                self.obs = self.vecenv.recv()[0]
        return steps * self.vecenv.num_agents / (time.perf_counter() - t0)

    def close(self) -> None:
        self.vecenv.close()


def measure(labels: list[str], rounds: int = 20, block_steps: int = 100, warmup_blocks: int = 2,
            seed: int = 1, on_round=None, until: Callable[[dict[str, list[float]], list[float]], bool] | None = None,
            max_seconds: float | None = None, clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Rotate through the workloads each round (A B C, B C A, ...) so no workload always follows
    another; the reference workload runs in every round too. Stops after `rounds` rounds, or
    earlier when `until(samples, reference)` says so after a round, or when `max_seconds` (from the
    first timed round) have passed."""
    import torch

    # One thread: the workloads and the reference then feel a busy neighbour core alike (with two,
    # a matmul's second thread waits on whatever else runs there, and the ratio drifts).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    workloads = {label: RolloutWorkload(scenario_for(label, seed)) for label in labels}
    try:
        for w in workloads.values():
            for _ in range(warmup_blocks):
                w.block(block_steps)
        reference_workload(5)
        samples: dict[str, list[float]] = {label: [] for label in labels}
        reference: list[float] = []
        # `until` holds the gate's own minimum of rounds and precision (see `until_precise`)
        rule = StopRule(rounds, precision=0.0 if until is not None else None, max_seconds=max_seconds, min_rounds=0)
        counter = Rounds(rule, clock)
        while counter.more():
            for label in counter.order(labels):
                samples[label].append(workloads[label].block(block_steps))
            reference.append(reference_workload())
            if on_round is not None:
                on_round(counter.done + 1, rounds)
            counter.finished(lambda: until(samples, reference))
    finally:
        for w in workloads.values():
            w.close()
        torch.set_num_threads(threads)
    return Measurement(samples, reference, len(reference), block_steps, time.perf_counter() - t0,
                       stopped=counter.reason or ROUNDS)


def until_precise(checks: Sequence[Check], rule: GateRule) -> Callable[[dict[str, list[float]], list[float]], bool]:
    """The `until` of a gate run under `rule`: at least min_rounds, then every check's own
    half-width (see `own_half_width`) within the precision. Width only, never the verdict."""
    def until(samples: dict[str, list[float]], reference: list[float]) -> bool:
        if rule.precision is None or len(reference) < rule.min_rounds:
            return False
        return all(own_half_width(c, samples, reference) <= rule.precision for c in checks)
    return until


def labels_needed(checks: list[Check]) -> list[str]:
    """Every workload the checks name, in order of first mention."""
    out: list[str] = []
    for c in checks:
        for label in (c.lhs, c.rhs):
            if label != BASELINE and label not in out:
                out.append(label)
    return out


def load_baseline(path: Path, labels: Sequence[str] = ()) -> dict:
    """The stored baseline, checked able to decide checks of `labels` (before anything is measured)."""
    try:
        data = read_json(path, "gate-baseline")
    except ResultsError as e:  # carries the file name and reason
        raise GateError(f"baseline {e}") from None
    check_baseline(data, list(labels), source=f"baseline {path}")
    return data


def write_baseline(path: Path, runs: list[Measurement]) -> dict:
    """One entry per process: SPS divided by the reference workload of the same round."""
    payload = {
        "runs": [{"scores": {label: _scores(xs, m.reference) for label, xs in m.samples.items()},
                  "sps": m.samples, "reference": m.reference} for m in runs],
        "rounds": runs[0].rounds,
        "block_steps": runs[0].block_steps,
        "machine": runs[0].machine,
    }
    write_json(path, "gate-baseline", payload)
    return payload


def measure_in_subprocess(labels: list[str], rounds: int, block_steps: int) -> Measurement:
    """A fresh process per baseline run: process-to-process variation is what a baseline must hold."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.json"
        proc = subprocess.run([sys.executable, "-m", "perfkit.commands.gate", json.dumps(labels), str(rounds),
                               str(block_steps), str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"baseline measurement failed: {proc.stderr.strip()[-2000:]}")
        return Measurement(**json.loads(out.read_text()))


def read_checks(texts: Sequence[str], checks_file: Path | None = None) -> list[Check]:
    """Checks from --check texts and a file of one check per line ('#' starts a comment)."""
    texts = list(texts)
    if checks_file is not None:
        try:
            lines = Path(checks_file).read_text().splitlines()
        except OSError as e:
            raise GateError(f"--checks-file {str(checks_file)!r}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise GateError(f"--checks-file {str(checks_file)!r}: not a text file (byte {e.start} is not "
                            "UTF-8); expected one check per line") from None
        texts += [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
    if not texts:
        raise GateError("no checks: give --check TEXT or --checks-file FILE")
    return [parse_check(t) for t in texts]


def run(checks: list[Check], rule: GateRule, block_steps: int, baseline: dict | None = None,
        on_round=None) -> GateRecord:
    """Measure the checks' workloads under `rule` and decide every check."""
    labels = labels_needed(checks) or [checks[0].lhs]
    m = measure(labels, rule.rounds, block_steps, on_round=on_round, until=until_precise(checks, rule),
                max_seconds=rule.max_seconds)
    results = [evaluate(c, m.samples, m.reference, baseline) for c in checks]
    return GateRecord(results, m, rule, warnings_for(results, m, rule, baseline))


def warnings_for(results: list[CheckResult], m: Measurement, rule: GateRule, baseline: dict | None) -> list[str]:
    out = []
    if baseline is not None and baseline.get("block_steps") != m.block_steps:
        out.append(f"the baseline was timed in blocks of {baseline.get('block_steps')} steps, this run in "
                   f"{m.block_steps}; use the same --block-steps/--quick for both")
    for r in results:
        if r.detectable_below is not None and r.detectable_below < r.threshold * 0.95:
            out.append(f"{r.check}: the baseline's processes differ enough that only a ratio below "
                       f"{r.detectable_below:.3f} can fail this check, however many rounds run now; a relative "
                       "check (both sides timed in this run) sees smaller changes")
    if rule.precision is not None and m.stopped != "precision":
        out.append(f"stopped before every check was known to +-{rule.precision:.1%} ({m.stopped} limit); "
                   "verdicts stand, with the intervals shown")
    return out


def update_baseline(path: Path, checks: list[Check], runs: int, rounds: int, block_steps: int,
                    on_run=None) -> dict:
    """Measure the workloads of the checks in `runs` fresh processes and write the baseline. The
    workloads are the same as a gate run of these checks times: a workload's speed depends on
    what else rotates through the caches with it."""
    if not any(c.against_baseline for c in checks):
        raise GateError("--update-baseline: none of the checks is against the baseline")
    measured = []
    for k in range(runs):
        if on_run is not None:
            on_run(k + 1, runs)
        measured.append(measure_in_subprocess(labels_needed(checks), rounds, block_steps))
    return write_baseline(path, measured)


def baseline_summary(baseline: dict) -> list[str]:
    """One line per workload: median SPS over the baseline's processes, and their range."""
    lines = []
    for label in baseline["runs"][0]["sps"]:
        meds = [float(np.median(run["sps"][label])) for run in baseline["runs"]]
        lines.append(f"{label}: median {np.median(meds):,.0f} agent-steps/s; per process "
                     f"{min(meds):,.0f}–{max(meds):,.0f}")
    return lines


if __name__ == "__main__":  # python -m perfkit.commands.gate LABELS_JSON ROUNDS BLOCK_STEPS OUT_JSON
    import json
    import sys

    from perfkit.core.files import atomic_write_text

    _labels, _rounds, _block, _out = sys.argv[1:5]
    _m = measure(json.loads(_labels), int(_rounds), int(_block))
    atomic_write_text(_out, json.dumps(asdict(_m)))
