"""Checkpoint folders read back: every JSON file checked against its schema, weights checked against the
config before anything is allocated, and `janus average`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from janusgen.checkpoint import CHECKSUMS_FILE, CONFIG_FILE, STATE_JSON, load_model, load_trainer_state
from janusgen.cli import main
from janusgen.errors import JanusError
from janusgen.presets import model_preset, objective_preset
from janusgen.training.recipe import train
from tests.conftest import QUICK


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
    """a checksum-valid file with bytes that are not UTF-8 is one error naming it."""
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
    """checksum-valid but malformed config.json."""
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
    """checksum-valid but malformed trainer_state.json."""
    _edit_json(checkpoint, STATE_JSON, change, resign)
    with pytest.raises(JanusError, match=rf"trainer_state\.json: {message}"):
        load_trainer_state(checkpoint)


# ---------------------------------------------------------------------------------- janus average


@pytest.fixture(scope="module")
def runs(toy_data, tmp_path_factory) -> dict[str, Path]:
    """Two tiny two-step runs of the same model, one `ar` and one `janus` (step_1 and step_2 kept)."""
    root = tmp_path_factory.mktemp("average_runs")
    made = {}
    for objective in ("ar", "janus"):
        made[objective] = root / objective
        train(
            toy_data, made[objective], model_preset("tiny"), objective_preset(objective), QUICK, device="cpu"
        )
    return made


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _average(*argv: str) -> list[str]:
    return ["average", *[str(a) for a in argv]]


def test_average_never_replaces_a_folder_it_did_not_write(runs, tmp_path, capsys):
    """`--out DIR` holding the user's files deleted them (exit 0)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    assert main(_average(runs["ar"] / "last", "--out", out)) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "did not write (notes.txt)" in err and "Traceback" not in err
    assert _tree(out) == {"notes.txt": b"keep me\n"}


def test_average_refuses_the_run_folder_and_its_own_entries(runs, capsys):
    """`--run R --last 2 --out R` wiped the whole run."""
    run = runs["ar"]
    before = _tree(run)
    for out in (run, run / "last", run / "best", run / "checkpoints", run / "checkpoints" / "new"):
        assert main(_average("--run", run, "--last", "2", "--out", out)) == 2, out
        err = capsys.readouterr().err
        assert f"--out {out}" in err and "Traceback" not in err, err
    assert main(
        _average(run / "checkpoints" / "step_00000001", "--out", run / "checkpoints" / "step_00000001")
    )
    assert "is inside the run's own checkpoints" in capsys.readouterr().err
    assert main(_average(run / "last", "--out", run / "last" / "avg"))
    assert "is inside the run's own last" in capsys.readouterr().err
    assert _tree(run) == before


def test_average_onto_a_file_leaves_the_file(runs, tmp_path, capsys):
    """`--out file.txt` hid the file as `.file.txt.tmp-PID-*`, and the next average deleted it."""
    target = tmp_path / "file.txt"
    target.write_text("mine\n")
    for _ in range(2):
        assert main(_average(runs["ar"] / "last", "--out", target)) == 2
        assert f"--out {target} exists and is not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
    assert target.read_text() == "mine\n"


def test_average_replaces_only_its_own_earlier_output(runs, tmp_path, capsys):
    out = runs["ar"] / "avg2"  # beside the run's own files, as the README shows
    try:
        assert main(_average("--run", runs["ar"], "--last", "2", "--out", out)) == 0
        assert main(_average("--run", runs["ar"], "--last", "1", "--out", out)) == 0  # its own: replaced
        config = json.loads((out / CONFIG_FILE).read_text())
        assert [Path(p).name for p in config["averaged_from"]] == ["step_00000002"]
        load_model(out)
        (out / "hypotheses.txt").write_text("the user's\n")
        assert main(_average("--run", runs["ar"], "--last", "2", "--out", out)) == 2
        assert "hypotheses.txt" in capsys.readouterr().err
        assert (out / "hypotheses.txt").read_text() == "the user's\n"
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("last", ["0", "-1", "3"])
def test_average_last_must_be_between_one_and_the_step_count(runs, tmp_path, capsys, last):
    """`--last 0` averaged every step, `--last -1` all but the first."""
    assert main(_average("--run", runs["ar"], "--last", last, "--out", tmp_path / "avg")) == 2
    assert f"--last {last}: must be between 1 and 2" in capsys.readouterr().err
    assert not (tmp_path / "avg").exists()


def test_average_refuses_checkpoints_of_different_objectives(runs, tmp_path, capsys):
    """an `ar` and a `janus` run of the same model were averaged silently."""
    argv = _average(runs["ar"] / "last", runs["janus"] / "last", "--out", tmp_path / "avg")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "objective" in err and "janus" in err and "ar" in err
    assert not (tmp_path / "avg").exists()


# ------------------------------------------------------------------------ weights against the config


def test_a_config_whose_shapes_disagree_with_the_weights_fails_before_allocating(
    checkpoint, resign, monkeypatch
):
    """a config with d_model 16384 over small weights allocated the model first (20 s, 4.9 GB),
    then failed. The shapes in the safetensors header are checked first."""
    import torch

    import janusgen.checkpoint
    from janusgen.model.transformer import JanusTransformer

    built = []

    class Counting(JanusTransformer):
        def __init__(self, cfg):
            if torch.empty(0).device.type != "meta":
                built.append(cfg.d_model)
                assert cfg.d_model < 1024, "a model of the config's size was allocated"
            super().__init__(cfg)

    monkeypatch.setattr(janusgen.checkpoint, "JanusTransformer", Counting)
    _edit_json(checkpoint, CONFIG_FILE, lambda c: {**c, "model": {**c["model"], "d_model": 16384}}, resign)
    with pytest.raises(
        JanusError,
        match=r"model\.safetensors: the weights do not fit .*json: \d+ of another shape \(dec_positions",
    ):
        load_model(checkpoint)
    assert built == []


def test_weights_missing_or_unexpected_are_named(checkpoint, resign):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(checkpoint / "model.safetensors"))
    weights["extra.weight"] = weights.pop("length_head.weight")
    save_file(weights, str(checkpoint / "model.safetensors"))
    resign(checkpoint)
    with pytest.raises(
        JanusError, match=r"1 missing \(length_head\.weight\); 1 unexpected \(extra\.weight\)"
    ):
        load_model(checkpoint)
