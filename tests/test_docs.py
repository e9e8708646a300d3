"""Help and docs stand alone: no pointer to files outside the project, every axis documented."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfkit.cli.main import main
from perfkit.core.scenario import AXES

AXES_DOC = Path(__file__).resolve().parent.parent / "docs" / "axes.md"


@pytest.mark.parametrize("command", [[], ["run"], ["compare"], ["variants"], ["profile"], ["flamediff"], ["gate"],
                                     ["diagnose"], ["report"], ["explain"], ["bisect"], ["learn"]])
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


ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(page: Path) -> list[str]:
    """The relative link targets of a Markdown page, outside code blocks and code spans, without
    their anchors (#section); web and mail links and same-page anchors are left out."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"(https?|mailto):", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_link_check_sees_links():
    assert "docs/axes.md" in relative_links(ROOT / "README.md")


def test_readme_is_at_most_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_ci_runs_the_readme_test_command():
    command = "pip install -e '.[test]' && pytest"
    assert command in (ROOT / "README.md").read_text()
    assert command in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_point_at_nothing_outside_the_project(page):
    text = page.read_text()
    for outside in ("FACTS", "DESIGN.md", "shared/"):
        assert outside not in text, f"{page.relative_to(ROOT)} mentions {outside}"
