"""The records' versioned JSON form, atomic writes, and the machine metadata every record carries.

History of `schema_version` (one number for every kind of record):
  1 — first version: TrialResult (windows, phases, learning, resolved env config + hash, machine)
      and CompareResult (trials by variant + stats).
  2 — a trial records how it ended (`error`, `exit_status`), its torch threads and what else used
      the machine during it (`sentinel`); a compare records its runner mode, rounds, blocks and
      stopping rule. Version-1 files are still read (the new fields take their defaults).
  3 — a trial records the compare `round` it ran in; a compare's trials are read as TrialResults
      and it no longer writes what is derived from them (`rows`, each profile's `overhead_ratio`:
      see CompareResult.summaries and profile_overhead) but writes each differential flamegraph's
      top frames (`flamediff_frames`), so `perfkit report` can redraw its table. Version-1 and -2
      files are still read: their `rows` and `overhead_ratio` are ignored.
  4 — a trial may record the cluster node it ran on (`node`), `requeued`, `node_lost`,
      `superseded`, `dispatch_s` and `process_s`; a compare records its `backend` ("local" or
      "ray") and the `nodes` it used.
      Earlier versions ran locally: the new fields take their defaults.
Files with any other version are rejected, never half-read.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Self

SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)


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


class Record:
    """A command's record: a dataclass whose `to_dict`/`from_dict` give its JSON form, saved with
    its `kind` and `schema_version` and checked on read. `from_dict` gets the whole file, so it
    can convert the shapes of older versions (see the history above)."""

    kind: ClassVar[str]  # names the record in its file; read_json refuses a file of another kind

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.kind, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        return cls.from_dict(read_json(path, cls.kind))


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
    except (ImportError, OSError):  # psutil missing or no loadavg: metadata is best-effort
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
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
