"""A Trainer built directly (no recipe), on the CPU, for tests of its parts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from janusgen.config import ObjectiveConfig, TrainConfig, model_preset
from janusgen.data.batching import PairBatches
from janusgen.data.dataset import PairDataset
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.training.distributed import DistributedContext
from janusgen.training.trainer import Trainer


@pytest.fixture
def make_trainer() -> Callable[[Path, Path, ObjectiveConfig, TrainConfig], Trainer]:
    def make(data: Path, out: Path, objective: ObjectiveConfig, cfg: TrainConfig) -> Trainer:
        tokenizer = PairDataset.open(data, "train").tokenizer
        model_cfg = dataclasses.replace(model_preset("tiny"), vocab_size=tokenizer.vocab_size)
        model = JanusTransformer(model_cfg)
        splits = {}
        for split, shuffle in (("train", True), ("valid", False)):
            splits[split] = PairBatches(
                PairDataset.open(data, split), model_cfg, cfg.max_tokens, cfg.seed, shuffle
            )
        ctx = DistributedContext(0, 1, 0, torch.device("cpu"))
        return Trainer(
            model,
            JanusObjective(objective, cfg.seed),
            splits["train"],
            splits["valid"],
            tokenizer,
            cfg,
            ctx,
            out,
            {},
        )

    return make
