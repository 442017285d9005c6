"""Checkpoint folders read back: every JSON file checked against its schema, weights checked against the
config before anything is allocated, and `janus average` (issue 38)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from janusgen.checkpoint import CHECKSUMS_FILE, CONFIG_FILE, STATE_JSON, load_model, load_trainer_state
from janusgen.errors import JanusError


@pytest.fixture
def checkpoint(toy_checkpoint, tmp_path) -> Path:
    """A disposable copy of the toy run's `last` (weights, config, tokenizer, trainer state)."""
    return Path(shutil.copytree(toy_checkpoint, tmp_path / "ckpt"))


def _edit_json(folder: Path, name: str, change, resign) -> None:
    path = folder / name
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    resign(folder)


# ------------------------------------------------------------------------------- JSON read back


@pytest.mark.parametrize("name", [CONFIG_FILE, CHECKSUMS_FILE, STATE_JSON])
def test_non_utf8_bytes_in_a_checkpoint_json_name_the_file(checkpoint, resign, name):
    """Item 8: a checksum-valid file with bytes that are not UTF-8 is one error naming it."""
    path = checkpoint / name
    path.write_bytes(path.read_bytes().replace(b"{", b'{"x": "\xff\xfe",', 1))
    if name != CHECKSUMS_FILE:
        resign(checkpoint)
    with pytest.raises(JanusError, match=rf"{name}: not UTF-8 text"):
        load_model(checkpoint)
        load_trainer_state(checkpoint)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: {k: v for k, v in c.items() if k != "model"}, r"config\.json: missing key\(s\): model"),
        (lambda c: [c], r"config\.json: must be a JSON object"),
        (lambda c: {**c, "model": [1, 2]}, r"config\.json: model must be an object"),
        (lambda c: {**c, "step": "7"}, r'config\.json: step must be an integer >= 0 \(found "7"\)'),
        (lambda c: {**c, "model": {**c["model"], "d_model": "64"}}, r"config\.json: model\.d_model='64'"),
    ],
    ids=["no-model", "a-list", "model-a-list", "step-a-string", "d_model-a-string"],
)
def test_a_malformed_config_is_one_error_naming_the_key(checkpoint, resign, change, message):
    """Item 9: checksum-valid but malformed config.json."""
    _edit_json(checkpoint, CONFIG_FILE, change, resign)
    with pytest.raises(JanusError, match=message):
        load_model(checkpoint)


def test_a_malformed_checksum_list_is_named(checkpoint):
    (checkpoint / CHECKSUMS_FILE).write_text(json.dumps({"sha256": {"model.safetensors": 5}}))
    with pytest.raises(JanusError, match=r"checksums\.json: sha256\.model\.safetensors must be a non-empty"):
        load_model(checkpoint)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: {k: v for k, v in s.items() if k != "optimizer"}, r"missing key\(s\): optimizer"),
        (lambda s: {**s, "step": "400"}, r'step must be an integer >= 0 \(found "400"\)'),
        (lambda s: {**s, "step": -5}, r"step must be an integer >= 0 \(found -5\)"),
        (lambda s: {**s, "best_step": 9999}, r"best_step 9999 is past step 400"),
        (lambda s: {**s, "sampler": {**s["sampler"], "epoch": "1"}}, r"sampler\.epoch must be an integer"),
        (lambda s: {**s, "elapsed_s": float("inf")}, r"elapsed_s must be a finite number"),
        (
            lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": "x"}},
            r"optimizer\.param_groups must be a list",
        ),
    ],
    ids=["no-optimizer", "step-a-string", "negative-step", "best-past-step", "epoch", "elapsed", "groups"],
)
def test_a_malformed_trainer_state_is_one_error_naming_the_key(checkpoint, resign, change, message):
    """Item 9: checksum-valid but malformed trainer_state.json."""
    _edit_json(checkpoint, STATE_JSON, change, resign)
    with pytest.raises(JanusError, match=rf"trainer_state\.json: {message}"):
        load_trainer_state(checkpoint)
