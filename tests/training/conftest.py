"""A Trainer built directly (no recipe), on the CPU, for tests of its parts."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def make_trainer(make_trainer_on):
    def make(data, out, objective, cfg):
        return make_trainer_on(torch.device("cpu"), data, out, objective, cfg)

    return make
