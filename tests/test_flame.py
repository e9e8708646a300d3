import json
from pathlib import Path

import pytest

from perfkit.core.folded import FoldedError, diff_frames, parse_folded, read_folded, to_folded, to_speedscope
from perfkit.render.flame_report import write_flamediff
from perfkit.render.flame_svg import render_diff_svg, render_svg

FIX = Path(__file__).parent / "fixtures"
TRAIN = "train (perfkit/train/ppo.py)"
ENV = "env_step (envs/arena/env.py)"
COST = "_injected_cost (envs/arena/env.py)"
UPDATE = "_update (perfkit/train/ppo.py)"


def test_parse_normalises_lines_and_processes():
    a = read_folded(FIX / "a.folded")
    assert a.total == 100
    assert a.stacks[("process main", TRAIN, ENV)] == 30  # line numbers dropped
    assert a.stacks[("process main", TRAIN)] == 20
    b = read_folded(FIX / "b.folded")
    assert ("process worker-1", "_worker_process (pufferlib/vector.py)") in b.stacks  # second PID = worker


def test_shares_are_normalised_by_total_samples():
    a, b = read_folded(FIX / "a.folded"), read_folded(FIX / "b.folded")
    assert a.inclusive()[ENV] == pytest.approx(0.30) and a.self_share()[UPDATE] == pytest.approx(0.50)
    assert b.total == 200
    assert b.inclusive()[ENV] == pytest.approx(0.60) and b.self_share()[ENV] == pytest.approx(0.10)
    assert b.tree()[("process main", TRAIN, ENV, COST)] == pytest.approx(0.50)


def test_diff_puts_the_new_cost_on_top_with_exact_shares():
    rows = diff_frames(read_folded(FIX / "a.folded"), read_folded(FIX / "b.folded"))
    top = rows[0]
    assert top.frame == COST
    assert (top.self_a, top.self_b, top.inclusive_a, top.inclusive_b) == (0.0, 0.5, 0.0, 0.5)
    by = {r.frame: r for r in rows}
    assert by[ENV].self_delta == pytest.approx(-0.20) and by[ENV].inclusive_delta == pytest.approx(0.30)
    assert by[UPDATE].self_delta == pytest.approx(-0.20)  # 50% -> 30%: same work, smaller share


def test_torch_style_frames_are_normalised():
    p = parse_folded("t.py(13):_<module>;torch/nn.py(50):_forward;<built-in method x of obj_at_0x7f44cb1d04b0> 7\n")
    assert list(p.stacks) == [("t.py:_<module>", "torch/nn.py:_forward", "<built-in method x of obj>")]


def test_bad_lines_name_file_and_line():
    with pytest.raises(FoldedError, match=r"x.folded:2: expected 'frame;frame COUNT'"):
        parse_folded("a;b 1\na;b many\n", "x.folded")


def test_a_frame_name_torn_by_nonblocking_sampling_is_dropped_from_perfkits_own_profiles():
    """As py-spy --nonblocking once wrote it in a test run: a frame name read mid-update held a
    newline, so one sample became a line without a count and a line of garbage frames."""
    torn = ("m.py:_run;perfkit_block__a__r3 (markers.py:1);ppo.py:_step 5\n"
            "m.py:_run;perfkit_block__a__r3 (markers.py:1);tabulate.py:_simple_separated_format\n"
            " (`plain` tables do not use any pseudo-graphics to draw lines:;x.py:_f 1\n")
    with pytest.raises(FoldedError, match=r"py.folded:2: expected 'frame;frame COUNT'"):
        parse_folded(torn, "py.folded")
    p = parse_folded(torn, "py.folded", torn_ok=True)
    assert p.total == 6 and sorted(p.stacks.values()) == [1, 5]  # the torn sample's own line is gone
    garbage = next(s for s, n in p.stacks.items() if n == 1)
    assert not any("perfkit_block" in f for f in garbage)  # explain leaves it out: no block marker


def test_round_trips_and_speedscope(tmp_path):
    a = read_folded(FIX / "a.folded")
    assert parse_folded(to_folded(a)).stacks == a.stacks
    doc = to_speedscope(a, "a")
    prof = doc["profiles"][0]
    assert prof["type"] == "sampled" and sum(prof["weights"]) == 100
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert {names[i] for s in prof["samples"] for i in s} == {"process main", TRAIN, ENV, UPDATE}
    # every stack comes back from the file with its weight, through JSON
    back = json.loads(json.dumps(doc))["profiles"][0]
    stacks = {tuple(names[i] for i in s): w for s, w in zip(back["samples"], back["weights"], strict=True)}
    assert stacks == a.stacks


def test_svgs_carry_frames_and_tooltips(tmp_path):
    a, b = read_folded(FIX / "a.folded"), read_folded(FIX / "b.folded")
    svg = render_svg(a, "A")
    assert svg.startswith("<?xml") and "train (perfkit/train/ppo.py) — 100.00% of 100 samples" in svg
    diff = render_diff_svg(a, b, "b", "B vs A", "A", "B")
    assert f"{COST} — A: 0.00%, B: 50.00% (change +50.00 points)" in diff
    assert 'fill="rgb(255,60,60)"' in diff  # the largest increase gets the strongest red
    on_a = render_diff_svg(a, b, "a", "B vs A", "A", "B")
    assert COST not in on_a  # A's shape has no such frame
    files, rows = write_flamediff(a, b, tmp_path, "A", "B")
    assert Path(files["on_b"]).exists() and Path(files["on_a"]).exists() and rows[0].frame == COST


def test_focus_keeps_samples_through_a_frame_and_reroots_them():
    b = read_folded(FIX / "b.folded").focus("env_step")
    assert b.total == 120 and set(b.stacks) == {(ENV,), (ENV, COST)}
    assert b.self_share()[COST] == pytest.approx(100 / 120)


def test_pyspy_nested_worker_processes_become_their_own_roots():
    text = ('process 10:"";train (ppo.py:1) 5\n'
            'process 10:"";process 12:"python -m perfkit.engine.trial";'
            '_worker_process (vector.py:230);step (env.py:3) 3\n'
            'process 10:"";process 11:"python -m perfkit.engine.trial";_worker_process (vector.py:230) 2\n')
    p = parse_folded(text)
    assert p.stacks == {("process main", "train (ppo.py)"): 5,
                        ("process worker-2", "_worker_process (vector.py)", "step (env.py)"): 3,
                        ("process worker-1", "_worker_process (vector.py)"): 2}


@pytest.mark.parametrize("count", ["-5", "nan", "inf", "-inf"])
def test_negative_or_non_finite_counts_name_file_and_line(tmp_path, count):
    # a negative count drew shares of 200% / -100%; NaN raised deep inside the renderer
    path = tmp_path / "bad.folded"
    path.write_text(f"main;work 10\nmain;other {count}\n")
    with pytest.raises(FoldedError) as e:
        read_folded(path)
    assert str(e.value) == f"{path}:2: sample count {count!r} must be a finite number >= 0"


def test_binary_file_names_file_and_line(tmp_path):
    path = tmp_path / "binary.folded"
    path.write_bytes(b"main;work 10\nmain 5\n\x00\x9f\x92\x96 binary\n")
    with pytest.raises(FoldedError) as e:
        read_folded(path)
    assert str(e.value) == f"{path}:3: not a text folded-stack file (byte 21 is not UTF-8)"


def test_zero_counts_are_still_accepted(tmp_path):
    path = tmp_path / "zero.folded"
    path.write_text("main;work 0\nmain 4\n")
    assert read_folded(path).total == 4


@pytest.mark.parametrize("content", [b"main;work 10\nmain;other -10\n", b"main;work nan\n", b"\xff\xfe\x00\x01"])
def test_flamediff_cli_on_bad_files_is_a_usage_error(tmp_path, content):
    from click.testing import CliRunner

    from perfkit.cli.main import main

    bad = tmp_path / "bad.folded"
    bad.write_bytes(content)
    r = CliRunner().invoke(main, ["flamediff", str(FIX / "a.folded"), str(bad), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert f"{bad}:" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()  # nothing drawn


def test_a_sample_without_frames_is_counted_not_an_error():
    # py-spy --nonblocking writes ` 19` when it could not read a stack: keep the samples, apart
    from perfkit.core.folded import NO_FRAMES

    prof = parse_folded("main (a.py:1);work (a.py:2) 5\n 19\n")
    assert prof.stacks == {("main (a.py)", "work (a.py)"): 5.0, (NO_FRAMES,): 19.0}
