"""Parallel-corpus sources: line-aligned text files, TSV, JSONL and Hugging Face datasets.

Every source streams `(source, target)` pairs one split at a time and never holds a whole file in memory.
Texts are normalised the same way everywhere (`normalize`): runs of whitespace, including the line's own
newline or "\\r", become one space. A pair with an empty side is still yielded: `prepare` drops and counts it.
Malformed input raises `DataError` naming the file and the 1-based line.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Any

from janusgen.data.tasks import Task, task
from janusgen.errors import DataError, JanusError

_BOM = "\ufeff"
_HF_BATCH = 1000  # rows fetched from Arrow at a time: one Python list per column, not the whole split


def normalize(text: str) -> str:
    """Collapse whitespace (SentencePiece would too) so line endings and stray tabs never reach a token."""
    return " ".join(text.split())


class PairSource(ABC):
    """A parallel corpus with named splits (train, valid, test, ...)."""

    src: str
    tgt: str

    @abstractmethod
    def missing(self, split: str) -> list[str]:
        """The expected locations of `split` that do not exist; empty when the split is there."""

    @abstractmethod
    def pairs(self, split: str) -> Iterator[tuple[str, str]]:
        """Stream the normalised pairs of `split`, in corpus order."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What was read, for meta.json."""

    def has_split(self, split: str) -> bool:
        return not self.missing(split)

    def require_splits(self, splits: tuple[str, ...] | list[str]) -> None:
        """Raise one `DataError` naming every absent split and where it was looked for."""
        problems = [f"split '{s}' (expected {' and '.join(m)})" for s in splits if (m := self.missing(s))]
        if problems:
            raise DataError("missing " + "; ".join(problems))


# ------------------------------------------------------------------------------------------ files


def _read_lines(path: Path) -> Iterator[str]:
    """Yield the lines of a UTF-8 file without their line ending, one at a time.

    Read as bytes and decoded per line, so a bad byte is reported with its line and offset
    instead of as a decode error somewhere inside a buffer.
    """
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8: byte 0x{raw[e.start]:02x} at byte offset "
                    f"{offset + e.start} of the file ({e.start} within the line)"
                ) from None
            offset += len(raw)
            if lineno == 1:
                line = line.removeprefix(_BOM)
            yield line.rstrip("\r\n")


class _FolderSource(PairSource):
    kind = ""

    def __init__(self, folder: Path, src: str, tgt: str) -> None:
        self.folder = Path(folder)
        self.src = src
        self.tgt = tgt
        if not self.folder.is_dir():
            raise DataError(f"corpus folder {self.folder} does not exist or is not a folder")

    @abstractmethod
    def files(self, split: str) -> list[Path]:
        """The files holding `split`."""

    def missing(self, split: str) -> list[str]:
        return [str(p) for p in self.files(split) if not p.is_file()]

    def describe(self) -> dict[str, Any]:
        return {"format": self.kind, "folder": str(self.folder.resolve()), "src": self.src, "tgt": self.tgt}


class TextFilesSource(_FolderSource):
    """Line-aligned plain text: `{folder}/{split}.{src}` and `{folder}/{split}.{tgt}`."""

    kind = "text"

    def files(self, split: str) -> list[Path]:
        return [self.folder / f"{split}.{self.src}", self.folder / f"{split}.{self.tgt}"]

    def pairs(self, split: str) -> Iterator[tuple[str, str]]:
        self.require_splits([split])
        src_path, tgt_path = self.files(split)
        for lineno, (s, t) in enumerate(zip_longest(_read_lines(src_path), _read_lines(tgt_path)), 1):
            if s is None or t is None:
                short, long = (src_path, tgt_path) if s is None else (tgt_path, src_path)
                raise DataError(
                    f"line counts differ: {short} ends after line {lineno - 1} but {long} has a line {lineno}"
                )
            yield normalize(s), normalize(t)


class TsvSource(_FolderSource):
    """`{folder}/{split}.tsv`, one pair per line: source<TAB>target."""

    kind = "tsv"

    def files(self, split: str) -> list[Path]:
        return [self.folder / f"{split}.tsv"]

    def pairs(self, split: str) -> Iterator[tuple[str, str]]:
        self.require_splits([split])
        (path,) = self.files(split)
        for lineno, line in enumerate(_read_lines(path), 1):
            cols = line.split("\t")
            if len(cols) != 2:
                raise DataError(
                    f"{path}:{lineno}: expected 2 tab-separated columns (source<TAB>target), got {len(cols)}"
                )
            yield normalize(cols[0]), normalize(cols[1])


def _field(row: dict[str, Any], key: str, where: str) -> str:
    """`row[key]`, else `row["translation"][key]` (the layout of Hugging Face WMT datasets), normalised."""
    if key in row:
        value = row[key]
    else:
        nested = row.get("translation")
        if not isinstance(nested, dict) or key not in nested:
            raise DataError(f"{where}: no field '{key}' (looked for '{key}' and 'translation.{key}')")
        value = nested[key]
    if value is None:
        return ""  # a null side reads as empty: dropped and counted, like an empty line
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' is {type(value).__name__}, not a string")
    return normalize(value)


def _row_pair(row: Any, src: str, tgt: str, where: str) -> tuple[str, str]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(row).__name__}")
    return _field(row, src, where), _field(row, tgt, where)


class JsonlSource(_FolderSource):
    """`{folder}/{split}.jsonl`: one JSON object a line, fields `src` and `tgt` or `translation.{src,tgt}`."""

    kind = "jsonl"

    def files(self, split: str) -> list[Path]:
        return [self.folder / f"{split}.jsonl"]

    def pairs(self, split: str) -> Iterator[tuple[str, str]]:
        self.require_splits([split])
        (path,) = self.files(split)
        for lineno, line in enumerate(_read_lines(path), 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: JSON nested too deeply to read") from None
            yield _row_pair(row, self.src, self.tgt, f"{path}:{lineno}")


# ---------------------------------------------------------------------------------- Hugging Face


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise JanusError(
            "reading a Hugging Face dataset needs the `datasets` package: pip install janusgen[hf]"
        ) from e
    return datasets


class HuggingFaceSource(PairSource):
    """A Hugging Face dataset: a hub name (`load_dataset(name, config)`) or a folder from `save_to_disk`.

    Columns `src` and `tgt`, or one `translation` column of dicts as in the WMT datasets. Split
    "valid" falls back to the dataset's "validation". Rows are read from the memory-mapped Arrow
    table in batches, never as a whole column.
    """

    def __init__(self, name: str, config: str | None, src: str, tgt: str, task: Task | None = None) -> None:
        self.name = name
        self.config = config
        self.src = src
        self.tgt = tgt
        self.task = task  # a generation task: its columns and row -> pair rule instead of src / tgt columns
        self.local = Path(name).is_dir()
        self._splits: Any = None  # the DatasetDict, loaded on first use

    def _dataset_dict(self) -> Any:
        if self._splits is None:
            datasets = _import_datasets()
            try:
                if self.local:
                    loaded = datasets.load_from_disk(self.name)
                else:
                    loaded = datasets.load_dataset(self.name, self.config)
            except Exception as e:  # hub, network and format errors have many types; all mean "cannot read"
                label = self.name + (f" ({self.config})" if self.config else "")
                raise DataError(f"cannot load Hugging Face dataset {label}: {type(e).__name__}: {e}") from e
            if not isinstance(loaded, datasets.DatasetDict):
                raise DataError(
                    f"Hugging Face dataset {self.name} has no splits: save a DatasetDict "
                    "(e.g. DatasetDict(train=..., validation=..., test=...).save_to_disk(folder))"
                )
            self._splits = loaded
        return self._splits

    def _hf_split(self, split: str) -> str | None:
        splits = self._dataset_dict()
        if split in splits:
            return split
        if split == "valid" and "validation" in splits:
            return "validation"
        return None

    def missing(self, split: str) -> list[str]:
        if self._hf_split(split) is not None:
            return []
        alias = " or 'validation'" if split == "valid" else ""
        available = ", ".join(self._dataset_dict()) or "none"
        return [f"split '{split}'{alias} in Hugging Face dataset {self.name} (it has: {available})"]

    def pairs(self, split: str) -> Iterator[tuple[str, str]]:
        self.require_splits([split])
        hf_split = self._hf_split(split)
        table = self._dataset_dict()[hf_split]
        columns = table.column_names
        if self.task is not None:
            yield from self._task_pairs(table, hf_split)
            return
        if self.src in columns and self.tgt in columns:
            wanted = [self.src, self.tgt]
        elif "translation" in columns:
            wanted = ["translation"]
        else:
            raise DataError(
                f"Hugging Face dataset {self.name}, split '{hf_split}': no columns '{self.src}' and "
                f"'{self.tgt}' and no 'translation' column (columns: {', '.join(columns)})"
            )
        row_index = 0
        for batch in table.select_columns(wanted).iter(batch_size=_HF_BATCH):
            # Rebuild row dicts so both layouts share the JSONL field rules and messages.
            if wanted == ["translation"]:
                rows = [{"translation": t} for t in batch["translation"]]
            else:
                sides = zip(batch[self.src], batch[self.tgt], strict=True)
                rows = [{self.src: s, self.tgt: t} for s, t in sides]
            for row in rows:
                where = f"Hugging Face dataset {self.name}, split '{hf_split}', row index {row_index}"
                yield _row_pair(row, self.src, self.tgt, where)
                row_index += 1

    def _task_pairs(self, table: Any, hf_split: str) -> Iterator[tuple[str, str]]:
        task = self.task
        assert task is not None
        absent = [c for c in task.columns if c not in table.column_names]
        if absent:
            raise DataError(
                f"Hugging Face dataset {self.name}, split '{hf_split}': task {task.name} needs column(s) "
                f"{', '.join(absent)} (columns: {', '.join(table.column_names)})"
            )
        row_index = 0
        for batch in table.select_columns(list(task.columns)).iter(batch_size=_HF_BATCH):
            for values in zip(*(batch[c] for c in task.columns), strict=True):
                where = f"Hugging Face dataset {self.name}, split '{hf_split}', row index {row_index}"
                try:
                    src, tgt = task.pair(dict(zip(task.columns, values, strict=True)))
                except (KeyError, TypeError, IndexError, AttributeError) as e:
                    raise DataError(f"{where}: not a {task.name} row ({type(e).__name__}: {e})") from None
                yield _row_pair({"src": src, "tgt": tgt}, "src", "tgt", where)
                row_index += 1

    def describe(self) -> dict[str, Any]:
        name = str(Path(self.name).resolve()) if self.local else self.name
        out = {
            "format": "huggingface",
            "name": name,
            "config": self.config,
            "src": self.src,
            "tgt": self.tgt,
        }
        if self.task is not None:
            out["task"] = self.task.name
        return out


# ------------------------------------------------------------------------------------------ factory


def open_source(
    *,
    text: Path | None = None,
    tsv: Path | None = None,
    jsonl: Path | None = None,
    hf_dataset: str | None = None,
    hf_config: str | None = None,
    src: str | None,
    tgt: str | None,
    task_name: str | None = None,
) -> PairSource:
    """The source named by exactly one of `text`, `tsv`, `jsonl` (folders) or `hf_dataset`."""
    given = sum(x is not None for x in (text, tsv, jsonl, hf_dataset))
    if given != 1:
        raise JanusError(f"give exactly one of --text, --tsv, --jsonl, --hf-dataset (got {given})")
    if hf_config is not None and hf_dataset is None:
        raise JanusError("--hf-config only applies to --hf-dataset")
    if task_name is not None:
        if hf_dataset is None:
            raise JanusError("--task only applies to --hf-dataset")
        t = task(task_name)
        return HuggingFaceSource(str(hf_dataset), hf_config, src or t.src, tgt or t.tgt, t)
    if src is None or tgt is None:
        raise JanusError("give --src and --tgt (or --task with --hf-dataset)")
    if text is not None:
        return TextFilesSource(text, src, tgt)
    if tsv is not None:
        return TsvSource(tsv, src, tgt)
    if jsonl is not None:
        return JsonlSource(jsonl, src, tgt)
    return HuggingFaceSource(str(hf_dataset), hf_config, src, tgt)
