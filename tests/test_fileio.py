"""Writing files: a full disk (ENOSPC) anywhere janusgen writes is one line naming the device and the
file, and leaves nothing half-written; an --out that cannot be written is refused before any work."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

import janusgen.checkpoint
from janusgen.checkpoint import MODEL_FILE, load_model, load_trainer_state
from janusgen.cli import main
from janusgen.errors import JanusError
from janusgen.fileio import device_of, write_error, write_json, writing
from janusgen.training.logger import MetricsLogger
from tests.conftest import train_argv

TRAIN = [
    "--preset",
    "tiny",
    "--objective",
    "ar",
    "--max-tokens",
    "512",
    "--valid-bleu-sentences",
    "0",
    "--precision",
    "fp32",
    "--validate-every",
    "1",
    "--device",
    "cpu",
]


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return train_argv(data, out, *TRAIN, *extra)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def full_disk(monkeypatch):
    """Every fsync fails with ENOSPC, as on a full disk: every file janusgen writes atomically is
    fsynced before it is renamed into place, so this strikes each of them at its last step."""
    monkeypatch.setattr(os, "fsync", _no_space)


def _hidden(folder: Path) -> list[str]:
    """Temporaries a failed write left: `.NAME.tmp-*`, `.NAME.old-*`, `.NAME.tmp`."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob(".*") if ".tmp" in p.name or ".old" in p.name
    )


def _assert_no_space_error(err: str, written: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("janus: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("janus: error: no space left on "), err
    assert "while writing " in errors[0] and written in errors[0], err


def test_the_error_names_the_device_and_the_file(tmp_path):
    error = write_error(tmp_path / "x.bin", OSError(errno.ENOSPC, "No space left on device"))
    assert str(error).startswith(f"no space left on {device_of(tmp_path)} while writing {tmp_path / 'x.bin'}")
    assert "mounted at /" in device_of(tmp_path) or device_of(tmp_path).startswith("/")
    assert "Permission denied" in str(write_error(tmp_path / "x", OSError(errno.EACCES, "Permission denied")))
    with (
        pytest.raises(JanusError, match=r"no space left on .* while writing .*y\.txt"),
        writing(tmp_path / "y.txt"),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_write_json_leaves_no_temporary(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: _no_space())
    with pytest.raises(OSError) as info:
        write_json(tmp_path / "a.json", {"a": 1})
    assert info.value.filename == str(tmp_path / "a.json")
    assert list(tmp_path.iterdir()) == []


def test_train_on_a_full_disk(toy_data, tmp_path, full_disk, capsys):
    """`train` ended in a SafetensorError / OSError 28 traceback."""
    run = tmp_path / "run"
    assert main(_train_argv(toy_data, run, "--max-updates", "1")) == 2
    _assert_no_space_error(capsys.readouterr().err, str(run / "checkpoints" / "step_00000001"))
    assert _hidden(run) == [] and not list((run / "checkpoints").glob("*"))


def test_safetensors_on_a_full_disk_names_the_weights_file(toy_data, tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    def save_file(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(janusgen.checkpoint, "save_file", save_file)
    run = tmp_path / "run"
    assert main(_train_argv(toy_data, run, "--max-updates", "1")) == 2
    _assert_no_space_error(capsys.readouterr().err, str(run / "checkpoints" / "step_00000001" / MODEL_FILE))
    assert _hidden(run) == []


def test_resume_on_a_full_disk_keeps_the_last_checkpoint(toy_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(toy_data, run, "--max-updates", "1")) == 0
    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", _no_space)
    argv = train_argv(
        str(toy_data),
        str(run),
        "--resume",
        "--max-updates",
        "2",
        "--device",
        "cpu",
    )
    assert main(argv) == 2
    _assert_no_space_error(capsys.readouterr().err, str(run))
    monkeypatch.undo()
    assert _hidden(run) == []
    assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == 1
    load_model(run / "last")
    load_trainer_state(run / "last")


def test_prepare_on_a_full_disk(tmp_path, full_disk, capsys):
    from tests.conftest import write_toy_corpus

    text = write_toy_corpus(tmp_path / "text", {"train": 50, "valid": 5, "test": 5})
    out = tmp_path / "data"
    argv = ["data", "prepare", "--text", str(text), "--src", "es", "--tgt", "en", "--out", str(out)]
    assert main([*argv, "--vocab-size", "40"]) == 2
    _assert_no_space_error(capsys.readouterr().err, str(out))
    assert not out.exists() and _hidden(tmp_path) == []


def test_average_and_evaluate_hypotheses_on_a_full_disk(
    toy_checkpoint, toy_data, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(os, "fsync", _no_space)
    out = tmp_path / "avg"
    assert main(["average", str(toy_checkpoint), "--out", str(out)]) == 2
    _assert_no_space_error(capsys.readouterr().err, str(out))
    assert not out.exists() and _hidden(tmp_path) == []
    hyps = tmp_path / "hyps.txt"
    argv = ["evaluate", "--checkpoint", str(toy_checkpoint), "--data", str(toy_data), "--limit", "3"]
    assert main([*argv, "--beam", "1", "--dtype", "float32", "--hypotheses", str(hyps)]) == 2
    _assert_no_space_error(capsys.readouterr().err, str(hyps))
    assert not hyps.exists() and _hidden(tmp_path) == []


def test_a_log_line_that_does_not_fit_is_cut_back_off(tmp_path):
    logger = MetricsLogger(tmp_path, enabled=True, tensorboard=False)
    logger.log(1, "train", {"loss": 1.0})
    real = logger._jsonl

    class HalfWrites:
        def fileno(self):
            return real.fileno()

        def write(self, data):
            real.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    logger._jsonl = HalfWrites()
    with pytest.raises(JanusError, match=r"no space left on .* while writing .*log\.jsonl"):
        logger.log(2, "train", {"loss": 0.5})
    logger._jsonl = real
    logger.close()
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1]


# ------------------------------------------------------------------------ an --out that cannot be written


def test_train_out_on_an_existing_file(toy_data, tmp_path, capsys):
    """tracebacks from the logger's mkdir."""
    target = tmp_path / "file.txt"
    target.write_text("mine\n")
    assert main(_train_argv(toy_data, target, "--max-updates", "1")) == 2
    err = capsys.readouterr().err
    assert f"--out {target}: {target} exists and is not a folder" in err and "Traceback" not in err
    assert target.read_text() == "mine\n"
    assert main(_train_argv(toy_data, target / "run", "--max-updates", "1")) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_train_out_in_a_read_only_folder(toy_data, read_only_folder, capsys):
    """a read-only mount."""
    assert main(_train_argv(toy_data, read_only_folder, "--max-updates", "1")) == 2
    err = capsys.readouterr().err
    assert "cannot write in folder" in err and "Traceback" not in err, err
    assert main(_train_argv(toy_data, read_only_folder / "run", "--max-updates", "1")) == 2
    err = capsys.readouterr().err
    assert "cannot create folder" in err and "Traceback" not in err, err


def test_evaluate_into_an_unwritable_folder_fails_before_decoding(
    toy_checkpoint, toy_data, read_only_folder, monkeypatch, capsys
):
    """`evaluate --json` into an unwritable folder failed only after decoding."""
    from janusgen.decoding.translator import Translator

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(Translator, "load", load)
    for option in ("--json", "--hypotheses"):
        argv = ["evaluate", "--checkpoint", str(toy_checkpoint), "--data", str(toy_data)]
        assert main([*argv, option, str(read_only_folder / "out.json")]) == 2
        err = capsys.readouterr().err
        assert f"{option} {read_only_folder / 'out.json'}: cannot write in folder" in err, err
    shutil.rmtree(read_only_folder / "nothing", ignore_errors=True)


def test_a_failed_copy_names_its_destination(tmp_path):
    """shutil names a copy's source first: the file that did not fit is the destination (filename2)."""
    error = OSError(
        errno.ENOSPC, "No space left on device", str(tmp_path / "source"), None, str(tmp_path / "dest")
    )
    with pytest.raises(JanusError, match=r"while writing .*dest;"), writing(tmp_path / "folder"):
        raise error
