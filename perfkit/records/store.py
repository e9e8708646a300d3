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

Every value a record reads is checked on the way in (`Field`): a hand-edited file whose key is
missing, whose value has the wrong type, or whose number is NaN, infinite or out of range where
the writers never put one is a ResultsError naming the file, the key and the value, never an error
in a renderer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self, TypeVar

from perfkit.core.files import atomic_write_text

SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)


# No quantity a record holds (agent-steps, seconds, SPS, µs, counts, shares) comes near this; far
# beyond it the renderers' arithmetic overflows (sums, the exp of a log ratio, plot limits).
MAX_MAGNITUDE = 1e15
MIN_RATIO = 1 / MAX_MAGNITUDE  # the smallest ratio of two such quantities that is not zero

_T = TypeVar("_T")


class ResultsError(ValueError):
    """A results file is missing, unreadable, of an unknown schema version, or holds a value that
    is missing, of the wrong type or out of range."""


class FieldError(ResultsError):
    """A record's value that is missing, of the wrong type or out of range: the message names its
    key (`trials.A[0].windows[2].seconds`) and the value; Record.load adds the file."""


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


class Field:
    """One value of a record's JSON and its key, the path to it from the top of the file. Records
    read every value through one (`Record.read`), so what the renderers get has been checked: a
    value that is missing, of the wrong type or out of range is a FieldError naming its key."""

    def __init__(self, value: Any, key: str = "") -> None:
        self.value, self.key = value, key

    def fail(self, expected: str) -> NoReturn:
        raise FieldError(f"{self.key or 'the record'}: expected {expected}, got {_show(self.value)}")

    def _child(self, name: str) -> str:
        # keys such as "heart.get" or "wrapper=a b" are quoted, so the path reads back unambiguously
        plain = name and not any(c in name for c in '.[]" ')
        part = name if plain else f"[{json.dumps(name, ensure_ascii=False)}]"
        return f"{self.key}.{part}" if self.key and plain else self.key + part

    # -- containers

    def obj(self) -> dict[str, Any]:
        """The JSON object itself (free-form parts such as `machine` are kept as they are)."""
        if not isinstance(self.value, dict):
            self.fail("an object")
        return self.value

    def __getitem__(self, name: str) -> Field:
        """A key the record cannot do without."""
        obj = self.obj()
        if name not in obj:
            raise FieldError(f"{self._child(name)}: missing")
        return Field(obj[name], self._child(name))

    def get(self, name: str, default: Any = None) -> Field:
        """A key that may be absent (older versions lack it): then `default`, read like a value."""
        return Field(self.obj().get(name, default), self._child(name))

    def has(self, name: str) -> bool:
        return name in self.obj()

    def items(self) -> list[tuple[str, Field]]:
        return [(k, Field(v, self._child(k))) for k, v in self.obj().items()]

    def values(self) -> list[Field]:
        return [v for _, v in self.items()]

    def elements(self, length: int | None = None) -> list[Field]:
        if not isinstance(self.value, list) or (length is not None and len(self.value) != length):
            self.fail("an array" if length is None else f"an array of {length}")
        return [Field(v, f"{self.key}[{i}]") for i, v in enumerate(self.value)]

    def mapping(self, read: Callable[[Field], _T]) -> dict[str, _T]:
        """An object whose every value is read by `read`."""
        return {k: read(v) for k, v in self.items()}

    def sequence(self, read: Callable[[Field], _T], length: int | None = None) -> list[_T]:
        """An array whose every element is read by `read`."""
        return [read(v) for v in self.elements(length)]

    def optional(self, read: Callable[[Field], _T]) -> _T | None:
        """null, or a value read by `read`."""
        return None if self.value is None else read(self)

    # -- scalars

    def number(self, minimum: float = -MAX_MAGNITUDE, maximum: float = MAX_MAGNITUDE, *, nan: bool = False,
               inf: bool = False) -> float:
        """A JSON number in [minimum, maximum]; NaN only with `nan` (an interval that needed more
        rounds), +-infinity only with `inf` (a diverged run's loss). Ints stay ints."""
        x = self.value
        if isinstance(x, int) and not isinstance(x, bool):
            if minimum <= x <= maximum:  # compared exactly: an int too large for a float is refused here
                return x
        elif isinstance(x, float) and (nan if math.isnan(x) else inf if math.isinf(x) else minimum <= x <= maximum):
            return x
        also = ", NaN or +-Infinity" if nan and inf else " or NaN" if nan else " or +-Infinity" if inf else ""
        self.fail(f"{'a' if nan or inf else 'a finite'} number in [{minimum:g}, {maximum:g}]{also}")

    def integer(self, minimum: int = 0, maximum: float = MAX_MAGNITUDE) -> int:
        x = self.value
        if not (isinstance(x, int) and not isinstance(x, bool) and minimum <= x <= maximum):
            self.fail(f"an integer in [{minimum:g}, {maximum:g}]")
        return x

    def string(self) -> str:
        if not isinstance(self.value, str):
            self.fail("a string")
        return self.value

    def choice(self, *options: str) -> str:
        if self.value not in options:
            self.fail("one of " + ", ".join(map(repr, options)))
        return self.value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail("true or false")
        return self.value


def _show(value: Any) -> str:
    """A value as the file has it (NaN, 1e+308, "text", {...}), cut short."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def read_dataclass(cls: type[_T], f: Field, readers: Mapping[str, Callable[[Field], Any]]) -> _T:
    """An instance of dataclass `cls` from the object `f`, every field read by its reader; a field
    with a default may be absent from the file (older versions lack it) and takes that default.
    Keys the dataclass has no field for (derived ones such as a trial's `status`) are ignored."""
    fields = {x.name: x for x in dataclasses.fields(cls)}
    if set(readers) != set(fields):  # a field without a reader would be taken unchecked
        raise TypeError(f"{cls.__name__}: readers for {sorted(readers)}, fields {sorted(fields)}")
    kwargs = {}
    for name, read in readers.items():
        x = fields[name]
        if f.has(name) or (x.default is dataclasses.MISSING and x.default_factory is dataclasses.MISSING):
            kwargs[name] = read(f[name])
    return cls(**kwargs)


class Record:
    """A command's record: a dataclass whose `to_dict`/`from_dict` give its JSON form, saved with
    its `kind` and `schema_version` and checked on read. `from_dict` gets the whole file, so it
    can convert the shapes of older versions (see the history above), and reads it through a
    `Field` (`read`), so a value that is missing, of the wrong type or out of range is a
    FieldError, never an error in a renderer."""

    kind: ClassVar[str]  # names the record in its file; read_json refuses a file of another kind

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def read(cls, f: Field) -> Self:
        """The record from its JSON form, every value checked (FieldError naming the key)."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls.read(Field(data))

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.kind, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        data = read_json(path, cls.kind)
        try:
            return cls.from_dict(data)
        except FieldError as e:
            raise ResultsError(f"{path}: {e}") from None
