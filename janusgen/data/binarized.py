"""Binarized token arrays: the on-disk layout that `prepare` writes and `PairDataset` reads.

One sequence collection (say the source side of the train split) is two little-endian files:
`{prefix}.bin`, every sequence's token ids back to back (uint16 when the vocabulary fits, else int32),
and `{prefix}.idx`, n+1 int64 offsets into it (sequence i is `bin[idx[i]:idx[i+1]]`). Both are read
through memory maps, so opening a corpus larger than RAM costs nothing until tokens are touched.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from types import TracebackType

import numpy as np

from janusgen.errors import DataError
from janusgen.fileio import naming

DATA_FORMAT_VERSION = 1  # of a prepared data folder: bump when its layout or meta.json changes incompatibly
META_FILE = "meta.json"

TRAIN = "train"


def text_file(split: str, side: str) -> str:
    """Name of the plain-text copy of a split's side ("src" or "tgt"), kept for every split but train."""
    return f"{split}.{side}.txt"


_DTYPES = {"uint16": np.dtype("<u2"), "int32": np.dtype("<i4")}
TOKEN_DTYPES = tuple(_DTYPES)
_OFFSET = np.dtype("<i8")


def dtype_for_vocab(vocab_size: int) -> str:
    """The narrowest token dtype that holds every id of the vocabulary: "uint16" or "int32"."""
    return "uint16" if vocab_size <= np.iinfo(np.uint16).max else "int32"


def bin_path(prefix: Path) -> Path:
    return Path(f"{prefix}.bin")


def idx_path(prefix: Path) -> Path:
    return Path(f"{prefix}.idx")


class BinarizedWriter:
    """Append chunks of id sequences to `{prefix}.bin` as they come; `finish()` writes `{prefix}.idx`.

    Only one int64 length per sequence stays in memory (80 MB for 10M sequences), never the tokens.
    """

    def __init__(self, prefix: Path, dtype: str) -> None:
        self.prefix = Path(prefix)
        self.dtype = _DTYPES[dtype]
        self._lengths: list[np.ndarray] = []
        self._bin = open(bin_path(self.prefix), "wb")  # noqa: SIM115 (closed by finish or __exit__)

    def append(self, seqs: list[list[int]]) -> None:
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        # chain.from_iterable + fromiter flattens in C, without a Python loop over tokens.
        flat = np.fromiter(chain.from_iterable(seqs), dtype=self.dtype, count=int(lengths.sum()))
        self.append_flat(flat, lengths)

    def append_flat(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append sequences given back to back in `tokens`, with their lengths (which must sum to it)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(tokens):
            raise ValueError(f"lengths sum to {int(lengths.sum())} but {len(tokens)} tokens were given")
        try:
            np.asarray(tokens, dtype=self.dtype).tofile(self._bin)
        except OSError as e:  # a full disk: say which file (the caller removes what was half written)
            raise naming(e, bin_path(self.prefix)) from None
        self._lengths.append(lengths)

    def finish(self) -> np.ndarray:
        """Close the token file, write the offsets and return every sequence's length (int64)."""
        try:
            self._bin.close()
        except OSError as e:
            raise naming(e, bin_path(self.prefix)) from None
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=_OFFSET)
        np.cumsum(lengths, out=offsets[1:])
        try:
            offsets.tofile(idx_path(self.prefix))
        except OSError as e:
            raise naming(e, idx_path(self.prefix)) from None
        return lengths

    def __enter__(self) -> BinarizedWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._bin.close()
        except OSError as e:  # flushing the last tokens on a full disk
            if exc_type is None:
                raise naming(e, bin_path(self.prefix)) from None


class BinarizedArray:
    """Read-only, memory-mapped sequences written by `BinarizedWriter`."""

    def __init__(self, prefix: Path, dtype: str) -> None:
        self.prefix = Path(prefix)
        tokens_path, offsets_path = bin_path(self.prefix), idx_path(self.prefix)
        for path in (tokens_path, offsets_path):
            if not path.is_file():
                raise DataError(f"missing file {path}")
        token_dtype = _DTYPES[dtype]
        offsets_bytes = offsets_path.stat().st_size
        if offsets_bytes == 0 or offsets_bytes % _OFFSET.itemsize:
            raise DataError(f"{offsets_path} is truncated or corrupt ({offsets_bytes} bytes)")
        self._offsets = np.memmap(offsets_path, dtype=_OFFSET, mode="r")
        total = int(self._offsets[-1])
        if self._offsets[0] != 0 or tokens_path.stat().st_size != total * token_dtype.itemsize:
            raise DataError(f"{tokens_path} does not match {offsets_path}: truncated or corrupt")
        # np.memmap refuses an empty file; a split whose pairs were all dropped has no tokens.
        self._tokens = (
            np.memmap(tokens_path, dtype=token_dtype, mode="r") if total else np.zeros(0, dtype=token_dtype)
        )
        self.lengths = np.diff(self._offsets).astype(np.int64)
        if (self.lengths < 0).any():
            raise DataError(f"{offsets_path} is corrupt: offsets decrease")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def token_range(self) -> tuple[int, int]:
        """The smallest and largest token id (0, -1 without tokens): one pass over the memory map."""
        if len(self._tokens) == 0:
            return 0, -1
        return int(self._tokens.min()), int(self._tokens.max())

    def __getitem__(self, i: int) -> np.ndarray:
        """Sequence `i`: a read-only view into the memory map."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} sequences in {self.prefix}")
        i %= len(self)
        return self._tokens[self._offsets[i] : self._offsets[i + 1]]

    def gather(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequences `indices` back to back (a new array, token dtype) and their int64 lengths.

        One fancy index for the whole batch: token j of the k-th wanted sequence sits at
        `start[k] + j` in the file and at `before[k] + j` in the result.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} sequences in {self.prefix}")
        starts = self._offsets[indices]
        lengths = self._offsets[indices + 1] - starts
        before = np.cumsum(lengths) - lengths
        positions = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)
        return self._tokens[positions], lengths
