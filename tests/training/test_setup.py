"""`janus train`'s setup (janusgen.training.setup): a --config file with the keys of a checkpoint's
config.json reproduces the run that saved it; options given on the command line win over the file; a key
the file should not have is an error naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from janusgen.cli import main
from janusgen.errors import JanusError
from janusgen.presets import model_preset, objective_preset
from janusgen.training.setup import RunOptions, read_run_config, run_configs

SECTIONS = ("model", "objective", "train")


def _sections(checkpoint: Path) -> dict:
    config = json.loads((checkpoint / "config.json").read_text())
    return {name: config[name] for name in SECTIONS}


def test_a_saved_config_json_reproduces_its_run(toy_data, tmp_path, capsys):
    first = tmp_path / "first"
    common = ["--device", "cpu", "--max-updates", "2", "--validate-every", "2", "--valid-bleu-sentences", "0"]
    argv = ["train", "--data", str(toy_data), "--out", str(first), "--preset", "tiny", "--recipe", "cpu"]
    argv += ["--objective", "cmlm", "--precision", "fp32", "--lr", "0.004", "--model-option", "ffn_dim=96"]
    assert main(argv + common) == 0
    saved = first / "last" / "config.json"
    # no --data: the file's data.dir; no --preset, --recipe or --objective: the file's sections
    again = tmp_path / "again"
    assert main(["train", "--config", str(saved), "--out", str(again), *common]) == 0
    assert _sections(again / "last") == _sections(first / "last")
    assert json.loads(saved.read_text())["objective"]["name"] == "cmlm"
    capsys.readouterr()


def test_options_given_win_over_the_file_and_the_file_over_the_recipe(tmp_path):
    path = tmp_path / "run.yaml"
    text = "objective:\n  name: ar\ntrain:\n  max_updates: 7\n  lr: 2e-3\n  warmup_fraction: 1e-1\n"
    path.write_text(text, encoding="utf-8")  # 1e-1: a number, although YAML 1.1 would read text
    file = read_run_config(path)
    options = RunOptions(preset="tiny", recipe="cpu", train={"lr": 0.01}, config_file=path)
    model, objective, train = run_configs(options, file, f"--config {path}")
    assert model.d_model == model_preset("tiny").d_model and model.dropout == 0.0  # the cpu recipe's
    assert objective == objective_preset("ar")
    assert (train.max_updates, train.warmup_fraction) == (7, 0.1)  # the file's, over the recipe's 0.05
    assert (train.lr, train.max_tokens) == (0.01, 2048)  # the option's over the file's; the recipe's


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: 3\n", "unknown key 'epochs'"),
        ("train:\n  lr: 0.001\n  lrr: 2\n", "unknown key train.lrr (not a TrainConfig field)"),
        ("model: 3\n", "model must be a mapping of ModelConfig fields"),
        ("- lr\n", "must hold a mapping"),
        ("train: {lr: [1\n", "not valid YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_key(tmp_path, capsys, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    argv = ["train", "--config", str(path), "--data", "no-such-data", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"janus: error: --config {path}: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_bad_value_in_the_file_is_named_with_the_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"train": {"lr": -1}}), encoding="utf-8")
    with pytest.raises(JanusError, match=rf"--config {path}: train.lr=-1: must be > 0"):
        run_configs(RunOptions(config_file=path), read_run_config(path), f"--config {path}")


def test_the_file_and_the_options_must_agree_on_model_and_objective(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  d_model: 64\nobjective:\n  name: ar\n", encoding="utf-8")
    file = read_run_config(path)
    with pytest.raises(JanusError, match="--preset tiny: --config .* sets the model"):
        run_configs(RunOptions(preset="tiny"), file, f"--config {path}")
    with pytest.raises(JanusError, match="--objective janus: --config .* trains ar"):
        run_configs(RunOptions(objective="janus"), file, f"--config {path}")
