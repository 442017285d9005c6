"""Configuration dataclasses. Components take plain arguments; only recipes (CLI, trainer) read these.

Every config round-trips through JSON with `to_dict` / `from_dict`; an unknown key is an error,
never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from janusgen.errors import JanusError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def from_dict(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build `cls` from a dict, refusing keys the dataclass does not have."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise JanusError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**values)


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class BibleConfig:
    """The default verse-aligned corpus built from Debian's SWORD packages."""

    source: str = "sparv"  # module key (see data.bible.MODULES): sparv, web, kjv
    target: str = "web"
    max_words: int = 150  # a verse longer than this (either side, whitespace words) is dropped
    max_ratio: float = 2.5  # drop pairs whose word-count ratio (longer / shorter) exceeds this
    valid_fraction: float = 0.032  # of all references, by hash: about 1,000 verses
    test_fraction: float = 0.064  # about 2,000 verses
    sword_path: str | None = None  # a SWORD library folder to use instead of looking for one


@dataclass(frozen=True)
class PrepareConfig:
    """Vocabulary and binarization of a parallel corpus."""

    vocab_size: int = 8000
    model_type: str = "unigram"  # SentencePiece: unigram or bpe
    character_coverage: float = 1.0
    spm_max_sentences: int = 2_000_000  # SentencePiece trains on a sample of at most this many lines
    chunk_lines: int = 20_000  # lines encoded per chunk: bounds memory for corpora larger than RAM
    num_threads: int = 2
    seed: int = 0
    splits: tuple[str, ...] = field(default=("train", "valid", "test"))
