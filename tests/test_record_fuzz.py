"""Hand-edited records: `perfkit report` and `perfkit explain DIR` either render them or raise a
ResultsError naming the file, the key and the bad value; no KeyError, TypeError or OverflowError
escapes. Property-based (Hypothesis, derandomized: the same examples every run) over the
committed records of every kind, plus the reported cases with their exact messages."""

from __future__ import annotations

import functools
import json
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfkit.commands import explain as ex
from perfkit.records.blocks import Block
from perfkit.records.compare import CompareResult
from perfkit.records.explain import ExplainRecord, GpuSummary
from perfkit.records.store import ResultsError
from perfkit.render.explain import render_explain
from perfkit.render.plots import PLOTS
from perfkit.render.report import REPORTS, compare_markdown, rerender

RECORDS = Path(__file__).parent / "fixtures" / "records"

# Every kind in REPORTS, and every shape of compare (processes, one process, a cluster, version 2).
FILES = {
    "compare-process": RECORDS / "compare-process" / "sps.json",
    "compare-inprocess": RECORDS / "compare-inprocess" / "sps.json",
    "compare-ray": RECORDS / "compare-ray" / "sps.json",
    "compare-v2": RECORDS / "v2-compare" / "sps.json",
    "trial": RECORDS / "run" / "trial.json",
    "diagnose": RECORDS / "diagnose" / "diagnose.json",
    "gate": RECORDS / "gate" / "gate.json",
    "profile": RECORDS / "profile" / "profile.json",
    "bisect": RECORDS / "bisect" / "bisect.json",
}

Path_ = tuple[str | int, ...]  # keys and indices from the top of a JSON document to one value


def explain_record() -> ExplainRecord:
    """An explain record with every part filled: phases, a cause, notes, learning, GPU rows."""
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(8):
        noise = 1 + rng.normal(0, 0.01, 2)
        a_st = {("run_epoch (ppo.py)", "step (env.py)"): 40.0 + rng.integers(-2, 3)}
        b_st = {("run_epoch (ppo.py)", "step (env.py)"): 40.0 + rng.integers(-2, 3),
                ("run_epoch (ppo.py)", "step (env.py)", "_reconcile (mymod.py)"): 10.0 + rng.integers(-1, 2)}
        pairs.append((Block(1000, 0.010 * noise[0], {"env": 0.004 * noise[0], "forward": 0.006 * noise[0]}, a_st),
                      Block(1000, 0.011 * noise[1], {"env": 0.005 * noise[1], "forward": 0.006 * noise[1]}, b_st)))
    e = ex.explain("A", "B", pairs)
    e.learning = {"A": {"episode_return": 1.5, "heart.get": 0.6}, "B": {"episode_return": 1.4, "heart.get": 0.5}}
    e.notes.append("a note")
    gpu = {label: GpuSummary(2, 768, 16, 10.0 + k, {"host_wait": 40.0 + k, "kernel_wait": 1.0, "other": 0.5}, 6.5 + k,
                             49.0, 7, f"gpu/{label}/trace.json.gz", {"profiler_step_us": 49.3 + k})
           for k, label in enumerate(("A", "B"))}
    return ExplainRecord([e], sampler={"tool": "py-spy", "rate": 25, "sampler_cores": 0.012},
                         flamegraphs={"B": {"on_b": "explain-B.svg", "on_a": "explain-B-on-A.svg"}}, gpu=gpu,
                         gpu_notes=["a gpu note"])


def paths(doc: Any, at: Path_ = ()) -> Iterator[Path_]:
    """Every value's path in a JSON document, containers included."""
    yield at
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, (*at, i))


def places(doc: Any) -> list[list[Path_]]:
    """The document's paths grouped by place in the schema (list indices ignored), so that a
    field of a 2,000-value array is drawn as often as a top-level field."""
    groups: dict[tuple, list[Path_]] = {}
    for p in paths(doc):
        if p:
            groups.setdefault(tuple("[]" if isinstance(k, int) else k for k in p), []).append(p)
    return [groups[k] for k in sorted(groups, key=repr)]


# What a hand edit puts in place of a value: another JSON type, or a bad number or string.
OTHER_TYPES = [None, True, 0, 2.5, "text", [], {}, [1.0], {"k": 1}]
BAD_NUMBERS = [math.nan, math.inf, -math.inf, 1e308, -1e308, -1, 0, 0.0]
BAD_STRINGS = ["", "ünïcødé ☃ \u202e"]


@st.composite
def edits(draw, doc: Any, groups: list[list[Path_]]) -> list[tuple[str, Path_, Any]]:
    """One to three edits of `doc` (`groups`: its `places`): ("delete", path of a key, None) or
    ("set", path, new value)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(draw(st.sampled_from(groups))))
        old = _at(doc, path)
        choices: list[tuple[str, Any]] = [("set", v) for v in OTHER_TYPES if type(v) is not type(old)]
        if isinstance(path[-1], str):
            choices.append(("delete", None))
        if isinstance(old, (int, float)) and not isinstance(old, bool):
            choices += [("set", v) for v in BAD_NUMBERS]
        if isinstance(old, str):
            choices += [("set", v) for v in BAD_STRINGS]
        op, value = draw(st.sampled_from(choices))
        out.append((op, path, value))
    return out


def _at(doc: Any, path: Path_) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _exists(doc: Any, path: Path_) -> bool:
    for k in path:
        if not (isinstance(doc, dict) and k in doc or isinstance(doc, list) and isinstance(k, int) and k < len(doc)):
            return False
        doc = doc[k]
    return True


def apply(doc: Any, changes: list[tuple[str, Path_, Any]]) -> Any:
    """A copy of `doc` with the edits made (an edit whose path an earlier one removed is dropped)."""
    doc = json.loads(json.dumps(doc))
    for op, path, value in changes:
        if not _exists(doc, path):
            continue
        parent = _at(doc, path[:-1])
        if op == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return doc


def write(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc))  # json writes NaN and Infinity as Python's json module reads them


def loads_and_renders_or_names_the_file(file: Path, render: Callable[[Path], object]) -> None:
    try:
        render(file)
    except ResultsError as e:
        assert str(file) in str(e), str(e)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _render_report(file: Path) -> None:
    """`perfkit report`'s renderer for the file's kind; a compare's markdown only, its plots drawn
    in test_the_most_extreme_values_a_compare_loads_still_plot (each plot takes 0.2 s)."""
    kind = next(k for k in REPORTS.values() if k.filename == file.name)
    record = kind.record.load(file)
    if isinstance(record, CompareResult):
        compare_markdown(record)
    else:
        kind.render(record, "github")


FUZZ = settings(derandomize=True, max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def source(name: str, workdir: Path) -> tuple[Path, Any, list[list[Path_]]]:
    """The record `name` is fuzzed from (explain: built here, no explain.json is committed), its
    JSON and the JSON's `places`."""
    file = FILES.get(name, workdir / "explain.json")
    if name == "explain":
        explain_record().save(file)
    doc = json.loads(file.read_text())
    return file, doc, places(doc)


@pytest.mark.parametrize("name", [*FILES, "explain"])
@FUZZ
@given(data=st.data())
def test_an_edited_record_renders_or_names_its_file(name, workdir, data):
    original, doc, groups = source(name, workdir)
    file = workdir / name / original.name
    file.parent.mkdir(exist_ok=True)
    write(file, apply(doc, data.draw(edits(doc, groups))))
    loads_and_renders_or_names_the_file(file, _render_report)


def _explain_dir_doc() -> Any:
    """explain/sps.json without its folded stacks: parsing them takes 0.7 s, and no edit of the
    record changes them."""
    doc = json.loads((RECORDS / "explain" / "sps.json").read_text())
    del doc["sampler"]["folded"]
    return doc


EXPLAIN_DIR_DOC = _explain_dir_doc()
EXPLAIN_DIR_PLACES = places(EXPLAIN_DIR_DOC)


def _explain_and_render(file: Path) -> None:
    """What `perfkit explain DIR` does with the compare record it reads there."""
    result = CompareResult.load(file)
    if len(result.variants) >= 2:  # the CLI refuses fewer as a usage error (check_labels)
        render_explain(ExplainRecord(ex.explain_compare(result, base=file.parent)))


@FUZZ
@given(data=st.data())
def test_explain_dir_on_an_edited_compare_explains_or_names_its_file(workdir, data):
    file = workdir / "explain-dir" / "sps.json"
    file.parent.mkdir(exist_ok=True)
    write(file, apply(EXPLAIN_DIR_DOC, data.draw(edits(EXPLAIN_DIR_DOC, EXPLAIN_DIR_PLACES))))
    loads_and_renders_or_names_the_file(file, _explain_and_render)


def test_the_most_extreme_values_a_compare_loads_still_plot(tmp_path):
    """The plots of a compare whose numbers are as large as a record may hold, and whose learning
    stats are NaN or infinite (a diverged run records them so)."""
    doc = json.loads(FILES["compare-process"].read_text())
    trials = [t for ts in doc["trials"].values() for t in ts]
    for k, t in enumerate(trials):
        t["sps"] = 1e15 if k % 2 else 1e-15
        for w in t["windows"]:
            w["agent_steps"] = 10**15
            w["learning"] = {"heart.get": [math.nan, math.inf, -math.inf, -1e15][k % 4], "episode_return": 1e15}
        t["phases"] = {"env": 1e15, "learn": 0.0}
    write(tmp_path / "sps.json", doc)
    result = CompareResult.load(tmp_path / "sps.json")
    for plot in PLOTS.values():
        assert plot(result).startswith(b"\x89PNG")


# -- the reported cases, with their messages ------------------------------------------------------

def _edited(tmp_path: Path, name: str, edit: Callable[[Any], object]) -> Path:
    """The committed record `name` with `edit(doc)` applied, in its own results directory."""
    run = tmp_path / name
    shutil.copytree(FILES[name].parent, run)
    doc = json.loads((run / FILES[name].name).read_text())
    edit(doc)
    write(run / FILES[name].name, doc)
    return run


def test_a_removed_key_is_named_with_its_path(tmp_path):
    run = _edited(tmp_path, "compare-process", lambda d: d["trials"]["wrapper=none"][1]["windows"][2].pop("seconds"))
    with pytest.raises(ResultsError) as e:
        rerender(run)
    assert str(e.value) == f"{run / 'sps.json'}: trials.wrapper=none[1].windows[2].seconds: missing"


def test_a_nan_where_a_number_is_measured_is_named_with_its_value(tmp_path):
    run = _edited(tmp_path, "trial", lambda d: d.update(sps=math.nan))
    with pytest.raises(ResultsError) as e:
        rerender(run)
    assert str(e.value) == f"{run / 'trial.json'}: sps: expected a finite number in [0, 1e+15], got NaN"


def test_a_huge_value_in_a_bisect_record_is_refused_not_overflowed(tmp_path):
    """render/bisection.py exponentiates the ends' log ratio: 1e308 raised OverflowError there."""
    run = _edited(tmp_path, "bisect", lambda d: d["ends"].update(delta=1e308))
    with pytest.raises(ResultsError) as e:
        rerender(run)
    assert str(e.value) == f"{run / 'bisect.json'}: ends.delta: expected a finite number in [-700, 700], got 1e+308"


def test_an_infinite_sps_in_a_compare_is_refused_before_statistics_sees_it(tmp_path):
    """statistics.stdev of an infinite sample raised AttributeError: 'float' object has no
    attribute 'numerator'."""
    run = _edited(tmp_path, "compare-process", lambda d: d["trials"]["wrapper=getattr"][0].update(sps=math.inf))
    with pytest.raises(ResultsError) as e:
        rerender(run)
    assert str(e.value) == (f"{run / 'sps.json'}: trials.wrapper=getattr[0].sps: expected a finite number in "
                            "[0, 1e+15], got Infinity")


def test_nan_where_the_writers_write_it_still_loads(tmp_path):
    """A commit skipped before its first round has no level and no ratio (NaN, as `perfkit bisect` writes
    them); the ends measured over one round have no interval."""
    def skip_first_step(d):
        d["steps"][0].update(verdict="skip", error="build failed", rounds=0, level=math.nan, to_good=math.nan,
                             level_ci=[math.nan, math.nan], to_good_ci=[math.nan, math.nan])
        d["ends"]["ci"] = [math.nan, math.nan]

    run = _edited(tmp_path, "bisect", skip_first_step)
    lines = rerender(run).text.splitlines()
    assert "The ends: bad against good 0.942 –, 45 rounds (SPS ratio)." in lines
    assert any(line.startswith("| 1      | 211c7f4318 ") and "| –  " in line and "| skip " in line for line in lines)
    assert "skipped 211c7f4318: build failed" in lines
