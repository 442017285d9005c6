"""The shape of the JSON files janusgen reads back, checked in one place.

Every JSON file the package writes and later trusts (a data folder's meta.json, a checkpoint's
config.json, checksums.json and trainer_state.json) is read through `read_checked` with a schema built
from the few node types below, declared beside the code that writes the file. A value that does not fit
is one JanusError naming the file and the key:

    .../meta.json: splits.train.pairs must be an integer >= 0 (found "12")

so a damaged or hand-edited file fails when it is read, never later as a KeyError or TypeError in the
middle of a run. Checksums say a file is the one that was written; the schema says it is one janusgen
could have written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from janusgen.errors import JanusError
from janusgen.fileio import read_json

_SHOWN_CHARS = 40  # of a wrong value, in the error


class Mismatch(Exception):
    """A value that does not fit its schema: `key` (dotted, from the file's top) and what it must be."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _join(key: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


class Spec:
    """One node of a schema."""

    what = "a value"

    def check(self, value: Any, key: str) -> None:
        """Raise Mismatch(key, ...) unless `value` fits."""

    def _fail(self, value: Any, key: str) -> None:
        raise Mismatch(key, f"must be {self.what} (found {_shown(value)})")


@dataclass(frozen=True)
class Anything(Spec):
    def check(self, value: Any, key: str) -> None:
        return None


@dataclass(frozen=True)
class Int(Spec):
    lo: int | None = None
    hi: int | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.lo is not None and self.hi is not None:
            return f"an integer between {self.lo} and {self.hi}"
        if self.lo is not None:
            return f"an integer >= {self.lo}"
        return "an integer"

    def check(self, value: Any, key: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail(value, key)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            self._fail(value, key)


@dataclass(frozen=True)
class Number(Spec):
    """A finite number (JSON's NaN and Infinity, which Python writes and reads, are refused)."""

    lo: float | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        return "a finite number" + (f" >= {self.lo:g}" if self.lo is not None else "")

    def check(self, value: Any, key: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self._fail(value, key)
        if self.lo is not None and value < self.lo:
            self._fail(value, key)


@dataclass(frozen=True)
class Text(Spec):
    choices: tuple[str, ...] | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.choices:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        return "a non-empty string"

    def check(self, value: Any, key: str) -> None:
        if not isinstance(value, str) or not value or (self.choices and value not in self.choices):
            self._fail(value, key)


@dataclass(frozen=True)
class Flag(Spec):
    what = "true or false"

    def check(self, value: Any, key: str) -> None:
        if not isinstance(value, bool):
            self._fail(value, key)


@dataclass(frozen=True)
class Nullable(Spec):
    inner: Spec

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"null or {self.inner.what}"

    def check(self, value: Any, key: str) -> None:
        if value is None:
            return
        try:
            self.inner.check(value, key)
        except Mismatch as e:
            if e.key != key:  # deeper inside the value: that key's message says it all
                raise
            self._fail(value, key)


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec = field(default_factory=Anything)
    length: int | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        return "a list" if self.length is None else f"a list of {self.length}"

    def check(self, value: Any, key: str) -> None:
        if not isinstance(value, list) or (self.length is not None and len(value) != self.length):
            self._fail(value, key)
        for i, entry in enumerate(value):
            self.item.check(entry, _join(key, i))


@dataclass(frozen=True)
class MapOf(Spec):
    """An object whose keys are free (file names, split names) and whose values all fit `value`."""

    value: Spec = field(default_factory=Anything)
    what = "an object"

    def check(self, value: Any, key: str) -> None:
        if not isinstance(value, dict):
            self._fail(value, key)
        for name, entry in value.items():
            self.value.check(entry, _join(key, name))


@dataclass(frozen=True)
class Record(Spec):
    """An object with named fields, each required unless listed in `optional`; other keys are allowed
    (the configs inside are checked by their dataclasses, which refuse unknown keys themselves)."""

    fields: Mapping[str, Spec]
    optional: tuple[str, ...] = ()
    what = "an object"

    def check(self, value: Any, key: str) -> None:
        if not isinstance(value, dict):
            self._fail(value, key)
        missing = [name for name in self.fields if name not in value and name not in self.optional]
        if missing:
            where = f" in {key}" if key else ""
            raise Mismatch(key, f"missing key(s){where}: {', '.join(missing)}")
        for name, spec in self.fields.items():
            if name in value:
                spec.check(value[name], _join(key, name))


def check(path: Path, value: Any, spec: Spec) -> Any:
    """`value` (read from `path`) if it fits `spec`, else a JanusError naming the file and the key."""
    try:
        spec.check(value, "")
    except Mismatch as e:
        if not e.key:  # the whole file: "must be an object", "missing key(s): ..."
            raise JanusError(f"{path}: {e.reason}") from None
        if e.reason.startswith("missing key"):
            raise JanusError(f"{path}: {e.reason}") from None
        raise JanusError(f"{path}: {e.key} {e.reason}") from None
    return value


def read_checked(path: Path, spec: Spec) -> Any:
    """The JSON in `path`, checked against `spec` (read errors, bad UTF-8 and bad JSON name the file)."""
    return check(Path(path), read_json(path), spec)


def check_inside(folder: Path, name: Any, where: Path, key: str, must_exist: bool = True) -> Path:
    """`folder / name` for a file name read from the JSON file `where` (at `key`); it must be a file
    inside `folder`: never an absolute path, a "../" path or a symlink out of it, so that a copied or
    downloaded folder never makes janusgen read or write files elsewhere. With `must_exist` it must be
    there too (otherwise a missing file is left to the reader that needs it)."""
    folder = Path(folder)
    inside = isinstance(name, str) and bool(name) and "\0" not in name
    if inside:
        root = folder.resolve()
        target = (folder / name).resolve()
        inside = target != root and target.is_relative_to(root)
    if not inside:
        raise JanusError(f"{where}: {key} {name!r} is not a file inside {folder}")
    if must_exist and not (folder / name).is_file():
        raise JanusError(f"{where}: {key} {name!r} does not exist in {folder}")
    return folder / name
