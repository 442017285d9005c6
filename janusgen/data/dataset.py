"""Reading a folder written by `janus data prepare`: one split's (source, target) token-id pairs."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from janusgen.data.binarized import (
    DATA_FORMAT_VERSION,
    META_FILE,
    TOKEN_DTYPES,
    TRAIN,
    BinarizedArray,
    bin_path,
    idx_path,
    text_file,
)
from janusgen.data.tokenizer import load_tokenizer
from janusgen.data.tokenizer_base import TextTokenizer
from janusgen.errors import DataError, JanusError
from janusgen.fileio import read_json, sha256_file
from janusgen.schema import Anything, Int, MapOf, Record, Text, check, check_inside

_REQUIRED_KEYS = ("format_version", "src", "tgt", "vocab_size", "dtype", "tokenizer", "splits")
# what `janus data prepare` and `janus distill` write into meta.json (janusgen.schema); the names it
# holds (tokenizer, files, distillation.references) must also be files inside the folder
META_SCHEMA = Record(
    {
        "format_version": Int(),
        "src": Text(),
        "tgt": Text(),
        "vocab_size": Int(1),
        "dtype": Text(choices=TOKEN_DTYPES),
        "tokenizer": Anything(),  # check_inside below says what is wrong with it
        "special_ids": MapOf(Int(0)),
        "splits": MapOf(Record({"pairs": Int(0)})),
        "files": MapOf(Text()),
        "distillation": Record({"references": Text()}, optional=("references",)),
        "source": MapOf(),
        "config": MapOf(),
    },
    optional=("special_ids", "files", "distillation", "source", "config"),
)


def read_meta(data_dir: Path) -> dict[str, Any]:
    """The validated meta.json of a prepared data folder."""
    data_dir = Path(data_dir)
    hint = "(run `janus data prepare` to create it)"
    if not data_dir.is_dir():
        raise JanusError(f"data folder {data_dir} does not exist or is not a folder {hint}")
    path = data_dir / META_FILE
    if not path.is_file():
        raise JanusError(f"{data_dir} is not a prepared data folder: it has no {META_FILE} {hint}")
    meta = read_json(path)
    missing = [k for k in _REQUIRED_KEYS if k not in meta] if isinstance(meta, dict) else list(_REQUIRED_KEYS)
    if missing:
        raise JanusError(f"{path}: not a janusgen data description (missing {', '.join(missing)})")
    if meta["format_version"] != DATA_FORMAT_VERSION:
        raise JanusError(
            f"{path}: format_version {meta['format_version']} is not supported (this janusgen reads "
            f"{DATA_FORMAT_VERSION}); run `janus data prepare` again"
        )
    check(path, meta, META_SCHEMA)
    check_inside(data_dir, meta["tokenizer"], path, "tokenizer")
    for name in meta.get("files", {}):  # `janus distill` copies these: never a path out of the folder
        check_inside(data_dir, name, path, "files", must_exist=False)
    kept = meta.get("distillation", {}).get("references")
    if kept is not None:  # a prefix: its .bin and .idx files are read
        for file in (bin_path(Path(kept)), idx_path(Path(kept))):
            check_inside(data_dir, str(file), path, "distillation.references", must_exist=False)
    return meta


class PairDataset:
    """Token ids of one split, memory-mapped; items are (source, target) WITHOUT bos/eos."""

    def __init__(self, data_dir: Path, split: str, meta: dict[str, Any]) -> None:
        self.data_dir = Path(data_dir)
        self.split = split
        self.meta = meta
        self.src = BinarizedArray(self.data_dir / f"{split}.src", meta["dtype"])
        self.tgt = BinarizedArray(self.data_dir / f"{split}.tgt", meta["dtype"])
        expected = meta["splits"][split]["pairs"]
        if not len(self.src) == len(self.tgt) == expected:
            raise DataError(
                f"{self.data_dir}: split '{split}' has {len(self.src)} source and {len(self.tgt)} target "
                f"sequences but {META_FILE} says {expected}; prepare it again"
            )
        self.src_lengths: np.ndarray = self.src.lengths
        self.tgt_lengths: np.ndarray = self.tgt.lengths
        # data written by `janus distill` keeps the original targets of its train split beside the teacher's
        self.references: BinarizedArray | None = None
        kept = meta.get("distillation", {}).get("references")
        if split == TRAIN and kept:
            self.references = BinarizedArray(self.data_dir / kept, meta["dtype"])
            if len(self.references) != expected:
                raise DataError(
                    f"{self.data_dir}: {kept} has {len(self.references)} sequences but {META_FILE} says "
                    f"{expected}; distil it again"
                )

    @classmethod
    def open(cls, data_dir: Path, split: str) -> PairDataset:
        meta = read_meta(data_dir)
        if split not in meta["splits"]:
            have = ", ".join(meta["splits"]) or "none"
            raise JanusError(f"{data_dir} has no split '{split}' (it has: {have})")
        return cls(data_dir, split, meta)

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        path = check_inside(self.data_dir, self.meta["tokenizer"], self.data_dir / META_FILE, "tokenizer")
        return load_tokenizer(path)

    def verify(self) -> None:
        """Check this split's token files against the sha256 values that meta.json records and every
        token id against the vocabulary. It reads the whole split, so `open` does not (decoding stays
        cheap); the trainer calls it before training."""
        files = self.meta.get("files")
        files = files if isinstance(files, dict) else {}
        vocab_size = self.tokenizer.vocab_size
        for array in (self.src, self.tgt, *([self.references] if self.references is not None else [])):
            for path in (bin_path(array.prefix), idx_path(array.prefix)):
                expected = files.get(path.name)
                if expected is not None and sha256_file(path) != expected:
                    raise DataError(
                        f"{path}: its sha256 does not match the one in {self.data_dir / META_FILE} (the file "
                        "is corrupt or was changed); run `janus data prepare` again"
                    )
            low, high = array.token_range()
            if low < 0 or high >= vocab_size:
                bad = low if low < 0 else high
                raise DataError(
                    f"{bin_path(array.prefix)}: token id {bad} is outside the vocabulary of "
                    f"{vocab_size} pieces; run `janus data prepare` again"
                )

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.src[i], self.tgt[i]

    def texts(self) -> tuple[list[str], list[str]]:
        """The split's source and target text, line for line with the token ids (not kept for train)."""
        sides = []
        for side in ("src", "tgt"):
            path = self.data_dir / text_file(self.split, side)
            if not path.is_file():
                raise JanusError(
                    f"{path} is missing: `janus data prepare` keeps text for every split but train"
                )
            sides.append(path.read_text(encoding="utf-8").splitlines())
        if not len(sides[0]) == len(sides[1]) == len(self):
            raise DataError(f"{self.data_dir}: the text of split '{self.split}' does not match its token ids")
        return sides[0], sides[1]

    def filter_by_length(self, max_src: int, max_tgt: int) -> tuple[np.ndarray, int]:
        """Indices (int64, ascending) of the pairs with at most `max_src` / `max_tgt` tokens, and how many
        were left out. Long pairs are dropped and counted, never truncated (lengths exclude bos/eos)."""
        fits = (self.src_lengths <= max_src) & (self.tgt_lengths <= max_tgt)
        indices = np.flatnonzero(fits).astype(np.int64)
        return indices, len(self) - len(indices)
