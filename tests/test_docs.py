"""Help and docs stand alone: no pointer to files outside the project, every axis documented."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli import main
from perfkit.scenario import AXES

AXES_DOC = Path(__file__).resolve().parent.parent / "docs" / "axes.md"


@pytest.mark.parametrize("command", [[], ["run"], ["compare"], ["variants"], ["profile"], ["flamediff"], ["gate"],
                                     ["diagnose"], ["report"], ["explain"], ["bisect"]])
def test_no_help_text_points_at_the_investigation_notes(command):
    r = CliRunner().invoke(main, [*command, "--help"])
    assert r.exit_code == 0, r.output
    assert "FACTS" not in r.output and "§" not in r.output


def test_variants_and_main_help_point_at_the_axes_doc():
    r = CliRunner().invoke(main, ["variants"])
    assert r.exit_code == 0 and "axes are explained in docs/axes.md" in r.output and "FACTS" not in r.output
    assert "axes are explained in docs/axes.md" in " ".join(CliRunner().invoke(main, ["--help"]).output.split())


def test_axes_doc_has_a_section_for_every_axis():
    text = AXES_DOC.read_text()
    sections = re.findall(r"^## (\S+)\s*$", text, flags=re.MULTILINE)
    assert sections == list(AXES)
    for name, axis in AXES.items():
        body = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert axis.default in body, name  # every section states its default
    assert "FACTS" not in text
    assert "(buf=None, seed=0)" in text and "pufferlib.PufferEnv" in text and "set_env_config" in text
