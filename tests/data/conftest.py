"""Tiny generated parallel corpora, written by the tests themselves (factories as fixtures, so test
modules never import this file by name)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from janusgen.config import PrepareConfig

Splits = dict[str, list[tuple[str, str]]]
SIZES = {"train": 300, "valid": 30, "test": 30}


def _words(rng: random.Random, letters: str) -> list[str]:
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(60)]


def _make_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` pseudo sentence pairs over two small word pools (the target mirrors the source's words)."""
    rng = random.Random(seed)
    pool = random.Random(1234)  # the same words in every split, so the vocabulary covers them
    src_words, tgt_words = _words(pool, "abcdefghilmnoprstuvñé"), _words(pool, "abcdefghiklmnoprstuwy")
    pairs = []
    for _ in range(n):
        ids = [rng.randrange(60) for _ in range(rng.randint(2, 14))]
        pairs.append((" ".join(src_words[i] for i in ids), " ".join(tgt_words[i] for i in reversed(ids))))
    return pairs


def _write_text(folder: Path, splits: Splits, src: str = "es", tgt: str = "en") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        (folder / f"{split}.{src}").write_text("".join(f"{s}\n" for s, _ in pairs), encoding="utf-8")
        (folder / f"{split}.{tgt}").write_text("".join(f"{t}\n" for _, t in pairs), encoding="utf-8")
    return folder


def _write_tsv(folder: Path, splits: Splits) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        (folder / f"{split}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return folder


def _write_jsonl(folder: Path, splits: Splits, nested: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        rows = [
            {"translation": {"es": s, "en": t}} if nested else {"es": s, "en": t, "id": i}
            for i, (s, t) in enumerate(pairs)
        ]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def _small_config(**overrides: object) -> PrepareConfig:
    return PrepareConfig(**{"vocab_size": 80, "chunk_lines": 64, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pairs() -> Splits:
    """Train / valid / test pairs, es -> en."""
    return {split: _make_pairs(n, seed) for seed, (split, n) in enumerate(SIZES.items())}


@pytest.fixture(scope="session")
def make_pairs() -> Callable[[int, int], list[tuple[str, str]]]:
    return _make_pairs


@pytest.fixture(scope="session")
def write_text() -> Callable[..., Path]:
    return _write_text


@pytest.fixture(scope="session")
def write_tsv() -> Callable[..., Path]:
    return _write_tsv


@pytest.fixture(scope="session")
def write_jsonl() -> Callable[..., Path]:
    return _write_jsonl


@pytest.fixture(scope="session")
def small_config() -> Callable[..., PrepareConfig]:
    """A PrepareConfig with a vocabulary small enough for the generated corpora."""
    return _small_config


@pytest.fixture
def text_dir(tmp_path: Path, pairs: Splits) -> Path:
    """The generated corpus as `{split}.es` / `{split}.en` files."""
    return _write_text(tmp_path / "corpus", pairs)
