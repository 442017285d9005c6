"""The preset tables (janusgen.presets): every entry builds, and reading them needs no torch (the command
line builds its options from them before anything heavy is imported)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from janusgen.errors import JanusError
from janusgen.presets import (
    BUDGETS,
    DEMO_PRESETS,
    MODEL_PRESETS,
    OBJECTIVE_PRESETS,
    RECIPES,
    model_preset,
    objective_preset,
)


def test_every_table_entry_builds_a_fresh_value():
    for table in (MODEL_PRESETS, OBJECTIVE_PRESETS, DEMO_PRESETS, BUDGETS):
        for name, build in table.items():
            assert build() == build() and build() is not build(), name
    for name in OBJECTIVE_PRESETS:
        assert objective_preset(name).name == name
    for name, budget in BUDGETS.items():
        assert budget().name == name and set(budget().objectives) == set(OBJECTIVE_PRESETS)


def test_a_recipe_keeps_the_architecture():
    for recipe in RECIPES.values():
        model, _, _ = recipe(model_preset("small"), objective_preset("janus"))
        assert (model.d_model, model.encoder_layers) == (256, 4)


def test_the_demo_tries_its_models_largest_first():
    layers = [build().encoder_layers + build().decoder_layers for build in DEMO_PRESETS.values()]
    assert layers == sorted(layers, reverse=True)


def test_an_unknown_name_lists_the_choices():
    with pytest.raises(JanusError, match="choose one of tiny, small"):
        model_preset("huge")
    with pytest.raises(JanusError, match="choose one of ar, cmlm, janus"):
        objective_preset("gan")


def test_the_tables_import_no_torch():
    code = "import sys, janusgen.presets; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
