"""The user's repository, through git: the commits to bisect (BisectError for bad input), a
detached worktree per tested commit, and running git itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class BisectError(ValueError):
    """Bad input (not a repository, unknown revision, ...): a usage error naming the problem."""


def git(repo: str | os.PathLike, *args: str) -> str:
    p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, ["git", *args], p.stdout, p.stderr)
    return p.stdout


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:10]


def commit_range(repo: str | os.PathLike, good: str, bad: str) -> list[Commit]:
    """[good, c1, ..., bad] along bad's first-parent history; BisectError for bad input."""
    try:
        git(repo, "rev-parse", "--git-dir")
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise BisectError(f"--repo {repo}: not a git repository") from None
    shas = {}
    for name, rev in (("--good", good), ("--bad", bad)):
        try:
            shas[name] = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        except subprocess.CalledProcessError:
            raise BisectError(f"{name} {rev!r}: unknown revision in {repo}") from None
    g, b = shas["--good"], shas["--bad"]
    if g == b:
        raise BisectError(f"--good {good!r} and --bad {bad!r} are the same commit ({g[:10]}): nothing to bisect")
    try:
        git(repo, "merge-base", "--is-ancestor", g, b)
    except subprocess.CalledProcessError:
        raise BisectError(f"--good {good!r} ({g[:10]}) is not an ancestor of --bad {bad!r} ({b[:10]}); "
                          "give the older, good revision as --good") from None
    lines = git(repo, "log", "--first-parent", "--reverse", "--format=%H%x00%s", f"{g}..{b}").splitlines()
    commits = [Commit(*ln.split("\0", 1)) for ln in lines]
    if not commits or git(repo, "rev-parse", f"{commits[0].sha}^").strip() != g:
        raise BisectError(f"--good {good!r} is not on the first-parent history of --bad {bad!r}")
    return [Commit(g, git(repo, "log", "-1", "--format=%s", g).strip()), *commits]


def diffstat(repo: str | os.PathLike, sha: str) -> str:
    return git(repo, "show", "--stat", "--format=", sha).strip("\n")


class Worktrees:
    """Detached worktrees of the user's repository under `root`; all removed on close (and the
    repository's worktree list pruned), whatever happened."""

    def __init__(self, repo: str | os.PathLike, root: str | os.PathLike):
        self.repo, self.root = Path(repo), Path(root)
        self.paths: list[Path] = []

    def add(self, commit: Commit) -> Path:
        path = self.root / commit.short
        if path not in self.paths:
            self.root.mkdir(parents=True, exist_ok=True)
            self.paths.append(path)
            git(self.repo, "worktree", "add", "--detach", "--quiet", str(path.resolve()), commit.sha)
        return path

    def close(self) -> None:
        for path in self.paths:
            try:
                git(self.repo, "worktree", "remove", "--force", str(path.resolve()))
            except subprocess.CalledProcessError:
                shutil.rmtree(path, ignore_errors=True)
        self.paths.clear()
        try:
            git(self.repo, "worktree", "prune")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Worktrees:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
