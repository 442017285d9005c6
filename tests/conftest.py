"""Fixtures shared across the test tree: a small prepared corpus that tiny models learn quickly."""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import pytest
import torch

from janusgen.cli import configure_logging
from janusgen.config import PrepareConfig
from janusgen.data.prepare import prepare
from janusgen.data.sources import TextFilesSource
from janusgen.training.config import TrainConfig

# Tiny models gain nothing from a second thread, and OpenMP threads that spin while another process
# holds the other core make a step up to 100x slower: one thread keeps the suite fast and steady.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def janus_logging() -> None:
    """The `janusgen` logger as `janus` sets it up (messages on stderr, INFO and above), for the library
    functions tests call directly too; a test that ran `janus --quiet` does not silence the next one."""
    configure_logging(logging.INFO)


def train_argv(data: Path | str, out: Path | str, *options: str) -> list[str]:
    """The arguments of `janus train --data DATA --out OUT OPTIONS...`."""
    return ["train", "--data", str(data), "--out", str(out), *options]


# two updates of a tiny model on the toy data, validated and saved at each, fp32 (the same on every CPU)
QUICK = TrainConfig(
    max_updates=2,
    max_tokens=512,
    lr=2e-3,
    warmup_updates=1,
    log_every=1,
    validate_every=1,
    valid_bleu_sentences=0,
    precision="fp32",
    seed=3,
)


_SRC_WORDS = [
    "casa",
    "perro",
    "gato",
    "agua",
    "sol",
    "luna",
    "mar",
    "rio",
    "monte",
    "flor",
    "arbol",
    "pan",
    "vino",
    "sal",
    "luz",
    "noche",
    "dia",
    "tierra",
    "cielo",
    "fuego",
]
_TGT_WORDS = [
    "house",
    "dog",
    "cat",
    "water",
    "sun",
    "moon",
    "sea",
    "river",
    "mount",
    "flower",
    "tree",
    "bread",
    "wine",
    "salt",
    "light",
    "night",
    "day",
    "earth",
    "sky",
    "fire",
]


def write_toy_corpus(folder: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """A word-for-word translation task with reversed order: learnable by a tiny model in seconds."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        src_lines, tgt_lines = [], []
        for _ in range(n):
            ids = [rng.randrange(len(_SRC_WORDS)) for _ in range(rng.randint(1, 8))]
            src_lines.append(" ".join(_SRC_WORDS[i] for i in ids))
            tgt_lines.append(" ".join(_TGT_WORDS[i] for i in reversed(ids)))
        (folder / f"{split}.es").write_text("\n".join(src_lines) + "\n", encoding="utf-8")
        (folder / f"{split}.en").write_text("\n".join(tgt_lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared data folder (vocabulary of 64 pieces) with train / valid / test splits."""
    root = tmp_path_factory.mktemp("toy")
    text = write_toy_corpus(root / "text", {"train": 600, "valid": 40, "test": 40})
    prepare(TextFilesSource(text, "es", "en"), root / "data", PrepareConfig(vocab_size=64, chunk_lines=256))
    return root / "data"


@pytest.fixture(scope="session")
def toy_checkpoint(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny janus model trained for a few seconds on `toy_data`: good enough to produce real words."""
    from janusgen.presets import model_preset, objective_preset
    from janusgen.training.recipe import train

    run = tmp_path_factory.mktemp("toy_run") / "run"
    cfg = TrainConfig(
        max_updates=400,
        max_tokens=1024,
        lr=3e-3,
        warmup_updates=30,
        log_every=100,
        validate_every=400,
        valid_bleu_sentences=0,
        seed=1,
        precision="fp32",
    )
    model = dataclasses.replace(model_preset("tiny"), d_model=64, ffn_dim=128)
    train(toy_data, run, model, objective_preset("janus"), cfg, device="cpu")
    return run / "last"


@pytest.fixture
def make_trainer_on():
    """A Trainer built directly (no recipe) on a given device, for tests of its parts."""
    from janusgen.data.batching import PairBatches
    from janusgen.data.dataset import PairDataset
    from janusgen.model.transformer import JanusTransformer
    from janusgen.objectives import JanusObjective
    from janusgen.training.distributed import DistributedContext
    from janusgen.training.trainer import Trainer

    def make(device, data, out, objective, cfg):
        from janusgen.config import to_dict
        from janusgen.presets import model_preset

        tokenizer = PairDataset.open(data, "train").tokenizer
        model_cfg = dataclasses.replace(model_preset("tiny"), vocab_size=tokenizer.vocab_size)
        model = JanusTransformer(model_cfg).to(device)
        splits = {
            split: PairBatches(PairDataset.open(data, split), model_cfg, cfg.max_tokens, cfg.seed, shuffle)
            for split, shuffle in (("train", True), ("valid", False))
        }
        ctx = DistributedContext(0, 1, 0, torch.device(device))
        objective = JanusObjective(objective, cfg.seed)
        config = {"model": to_dict(model_cfg)}  # what a checkpoint needs at least (and its model card)
        return Trainer(model, objective, splits["train"], splits["valid"], tokenizer, cfg, ctx, out, config)

    return make


def _resign(folder: Path) -> None:
    """Recompute a checkpoint's checksums.json after a test edited its files on purpose: the damage then
    reaches the reader that must catch it (a schema check, a shape check), not the checksum test."""
    import json

    from janusgen.checkpoint import CHECKSUMS_FILE
    from janusgen.fileio import sha256_file

    names = sorted(
        p.name for p in folder.iterdir() if p.name != CHECKSUMS_FILE and not p.name.startswith(".")
    )
    sums = {"sha256": {name: sha256_file(folder / name) for name in names}}
    (folder / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def resign():
    """resign(folder): recompute the checksums.json of checkpoint `folder` after editing it."""
    return _resign


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder nothing can be written into: chmod 555 (for a user), else a read-only tmpfs (for root,
    whom permissions do not stop); skipped where neither works."""
    import os
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / ".probe").touch()
    except OSError:
        yield folder
        folder.chmod(0o755)
        return
    (folder / ".probe").unlink()
    folder.chmod(0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("no way to make a read-only folder here (root without mount)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)
        os.sync()
