"""Result records and their versioned JSON form.

History of `schema_version`:
  1 — first version: TrialResult (windows, phases, learning, resolved env config + hash, machine)
      and CompareResult (trials by variant + stats).
  2 — a trial records how it ended (`error`, `exit_status`), its torch threads and what else used
      the machine during it (`sentinel`); a compare records its runner mode, rounds, blocks and
      stopping rule. Version-1 files are still read (the new fields take their defaults).
Files with any other version are rejected, never half-read.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


class ResultsError(ValueError):
    """A results file is missing, unreadable or of an unknown schema version."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file in the same directory + rename: readers see old or new, never half."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, kind: str, payload: dict) -> None:
    atomic_write_text(path, json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind, **payload}, indent=1))


def read_json(path: str | os.PathLike, kind: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:  # a binary file is not JSON either
        raise ResultsError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(data, dict):  # every perfkit record is an object; a list or number is some other file
        raise ResultsError(f"{path}: expected a JSON object at the top level, got a JSON {_json_type(data)}")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ResultsError(f"{path}: schema_version {version!r} is not supported (this perfkit reads "
                           f"{', '.join(map(str, READABLE_VERSIONS))})")
    if data.get("kind") != kind:
        raise ResultsError(f"{path}: holds a {data.get('kind')!r} record, expected {kind!r}")
    return data


def _json_type(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


@dataclass
class TrialResult:
    """Everything one trial measured. `windows` are per-epoch SPS windows (the first is warm-up)."""

    scenario: dict[str, Any]
    label: str
    sps: float  # steady-state agent-steps/s, warm-up window excluded
    first_window_sps: float
    agent_steps: int
    seconds: float
    epochs: int
    phases: dict[str, float]  # seconds per phase over the steady-state windows
    windows: list[dict[str, Any]]
    learning: dict[str, float]  # last episodes' means (hearts, ore, batteries, return, ...)
    env_config: dict[str, Any] | None
    env_config_hash: str | None
    vec: dict[str, Any]
    device: str
    ppo: dict[str, Any]
    checkpoints: int = 0
    evals: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)  # profiler outputs written by the trial
    error: str | None = None  # why the trial failed (exception or exit status + stderr tail); windows kept
    exit_status: int | None = None  # of the trial process, when it ran in one and failed
    threads: dict[str, Any] = field(default_factory=dict)  # torch intra-op / inter-op threads and why
    sentinel: dict[str, Any] = field(default_factory=dict)  # other processes' CPU use during the trial
    warmup_windows: int = 1  # windows left out of `sps` and `phases` (start-up, lazy imports, caches)

    @property
    def steady_windows(self) -> list[dict[str, Any]]:
        return self.windows[self.warmup_windows:] or self.windows

    @property
    def steady_agent_steps(self) -> int:
        return sum(w["agent_steps"] for w in self.steady_windows)

    @property
    def status(self) -> str:
        """"ok", "failed" or "interrupted": only "ok" trials enter statistics."""
        return "failed" if self.error else "interrupted" if self.interrupted else "ok"

    @property
    def env_steps_per_second(self) -> float:
        agents = self.vec.get("agents_per_env") or 1
        return self.sps / agents

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, "trial", self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def failed(cls, scenario: dict[str, Any], label: str, error: str | None, exit_status: int | None = None,
               interrupted: bool = False) -> TrialResult:
        """A trial that measured nothing: still a record, so the table can count it."""
        return cls(scenario=scenario, label=label, sps=0.0, first_window_sps=0.0, agent_steps=0, seconds=0.0,
                   epochs=0, phases={}, windows=[], learning={}, env_config=None, env_config_hash=None, vec={},
                   device="", ppo={}, error=error, exit_status=exit_status, interrupted=interrupted,
                   machine=machine_info())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrialResult:
        return cls.from_dict(read_json(path, "trial"))


def machine_info() -> dict[str, Any]:
    """CPU, cores, Python, torch/CUDA, GPU and git commit: enough to tell two machines apart."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["load_avg_1m"] = os.getloadavg()[0]
    except Exception:  # psutil missing or no loadavg: metadata is best-effort
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["git_commit"] = _git_commit()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
