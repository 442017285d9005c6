"""A run folder survives kills, refuses to mix two runs, and corrupt checkpoints or data are reported
(RELIABILITY.md)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import janusgen.fileio
from janusgen.checkpoint import CHECKSUMS_FILE, MODEL_FILE, load_model, load_trainer_state
from janusgen.cli import main
from janusgen.errors import JanusError
from janusgen.fileio import sha256_file
from janusgen.presets import model_preset, objective_preset
from janusgen.training.recipe import train
from janusgen.training.run_dir import resume_point
from tests.conftest import QUICK, train_argv


def _run(data, out, cfg=QUICK, **kw):
    return train(data, out, model_preset("tiny"), objective_preset("ar"), cfg, device="cpu", **kw)


def _resume(data, out, max_updates):
    return train(
        data, out, None, None, QUICK, device="cpu", resume=True, resume_overrides={"max_updates": max_updates}
    )


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no `except Exception` handler swallows it."""


def _inject_kill(monkeypatch, run: Path, at: int, exchange: bool) -> list[str]:
    """Count the renames (and atomic swaps) inside `run`; raise Killed instead of the `at`-th."""
    calls: list[str] = []
    real_replace, real_exchange = os.replace, janusgen.fileio.exchange_paths

    def count(kind: str, a, b) -> None:
        if str(run) in str(a) or str(run) in str(b):
            calls.append(f"{kind} {Path(a).name} -> {Path(b).name}")
            if len(calls) == at:
                raise Killed(calls[-1])

    def replace(a, b, **kw):
        count("rename", a, b)
        return real_replace(a, b, **kw)

    def swap(a, b):
        if not exchange:
            return False
        count("exchange", a, b)
        return real_exchange(a, b)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(janusgen.fileio, "exchange_paths", swap)
    return calls


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-swap", "two-renames"])
def test_a_kill_between_the_renames_of_last_leaves_a_resumable_run(toy_data, tmp_path, monkeypatch, exchange):
    clean = _calls_of_a_clean_run(toy_data, tmp_path / "clean", monkeypatch, exchange)
    # the second save's new `last` going in: the swap, or (without one) the rename after the old `last`
    # was moved away
    at = max(
        i + 1
        for i, call in enumerate(clean)
        if call.split()[1].startswith(".last") and call.endswith("-> last")
    )
    run = tmp_path / "run"
    _inject_kill(monkeypatch, run, at=at, exchange=exchange)
    with pytest.raises(Killed):
        _run(toy_data, run)
    monkeypatch.undo()
    if exchange:
        assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == 1
    else:
        assert not (run / "last").exists()  # the window that the atomic swap closes
    assert resume_point(run) is not None
    argv = train_argv(
        str(toy_data),
        str(run),
        "--resume",
        "--max-updates",
        "3",
        "--device",
        "cpu",
    )
    assert main(argv) == 0
    assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == 3


def _calls_of_a_clean_run(data, run, monkeypatch, exchange) -> list[str]:
    calls = _inject_kill(monkeypatch, run, at=10**9, exchange=exchange)
    _run(data, run)
    monkeypatch.undo()
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-swap", "two-renames"])
def test_a_kill_at_any_rename_leaves_a_resumable_run(toy_data, tmp_path, monkeypatch, exchange):
    total = len(_calls_of_a_clean_run(toy_data, tmp_path / "clean", monkeypatch, exchange))
    for at in range(1, total + 1):
        run = tmp_path / f"run{at}"
        _inject_kill(monkeypatch, run, at=at, exchange=exchange)
        with pytest.raises(Killed):
            _run(toy_data, run)
        monkeypatch.undo()
        if resume_point(run) is None:  # killed before the first checkpoint: nothing to resume
            assert not list((run / "checkpoints").glob("step_*/checksums.json"))
            _run(toy_data, run, overwrite=True)
        else:
            if exchange and (run / "checkpoints" / "step_00000001").is_dir():
                # `last` itself is never missing once written
                assert (run / "last").is_dir() or at <= total // 2
            _resume(toy_data, run, 2)
        assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == 2, at


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_sigkill_at_a_rename_under_strace_leaves_a_resumable_run(toy_data, tmp_path):
    """The reproduction in RELIABILITY.md: a real SIGKILL at the N-th rename system call of `janus train`."""
    argv = [
        sys.executable,
        "-m",
        "janusgen",
        "train",
        "--data",
        str(toy_data),
        "--preset",
        "tiny",
        "--objective",
        "ar",
        "--max-updates",
        "4",
        "--validate-every",
        "2",
        "--max-tokens",
        "512",
        "--valid-bleu-sentences",
        "0",
        "--precision",
        "fp32",
        "--device",
        "cpu",
    ]
    syscalls = "rename,renameat,renameat2"
    resumed = 0
    # strace counts each system call apart. rename: 1-3 and 7-9 write JSON files inside a step folder,
    # 4 and 10 move step 2 and step 4 in, 5 and 6 the first `last` and `best`; renameat2: the swaps of
    # the later `last` and `best`
    for syscall, when in (("rename", 3), ("rename", 5), ("rename", 10), ("renameat2", 1), ("renameat2", 2)):
        run = tmp_path / f"run-{syscall}-{when}"
        inject = f"inject={syscall}:signal=SIGKILL:when={when}"
        cmd = ["strace", "-f", "-qq", "-o", os.devnull, "-e", f"trace={syscalls}", "-e", inject]
        probe = subprocess.run([*cmd, *argv, "--out", str(run)], capture_output=True, text=True)
        if probe.returncode == 0:
            continue  # fewer renames than `when`
        if "ptrace" in probe.stderr or "PTRACE" in probe.stderr:
            pytest.skip(f"strace cannot trace here: {probe.stderr.strip()[:200]}")
        if resume_point(run) is None:
            continue  # killed before the first checkpoint
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "janusgen",
                "train",
                "--data",
                str(toy_data),
                "--out",
                str(run),
                "--resume",
                "--device",
                "cpu",
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, (syscall, when, done.stderr[-2000:])
        assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == 4
        resumed += 1
    assert resumed >= 3


# ------------------------------------------------------------------------------------ another run


def test_training_into_a_folder_with_another_run_is_refused(toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--data", str(toy_data), "--out", str(run), "--preset", "tiny", "--device", "cpu"]
    for leftover in ("log.jsonl", "checkpoints/step_00000010/model.safetensors"):
        shutil.rmtree(run, ignore_errors=True)
        (run / leftover).parent.mkdir(parents=True, exist_ok=True)
        (run / leftover).write_text("{}\n")
        assert main(base + ["--max-updates", "1"]) == 2
        assert "already holds a run" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_overwrite_deletes_only_the_runs_own_files(toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    _run(toy_data, run, cfg=dataclasses.replace(QUICK, max_updates=4, validate_every=2))
    (run / "notes.txt").write_text("mine\n")
    (run / "mine").mkdir()
    argv = train_argv(
        str(toy_data),
        str(run),
        "--preset",
        "tiny",
        "--objective",
        "ar",
        "--max-updates",
        "1",
        "--validate-every",
        "1",
        "--max-tokens",
        "512",
        "--valid-bleu-sentences",
        "0",
        "--precision",
        "fp32",
        "--device",
        "cpu",
    )
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--resume"]) == 2
    assert main([*argv, "--overwrite"]) == 0
    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert steps == ["step_00000001"]  # the old run's step_2 and step_4 are gone, not mixed in
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in log) == 1
    assert (run / "notes.txt").read_text() == "mine\n" and (run / "mine").is_dir()


# --------------------------------------------------------------------------- --resume and options


def test_resume_refuses_a_preset_or_objective_that_contradicts_the_checkpoint(toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    _run(toy_data, run, cfg=dataclasses.replace(QUICK, max_updates=1))
    base = ["train", "--data", str(toy_data), "--out", str(run), "--resume", "--device", "cpu"]
    assert main([*base, "--objective", "janus"]) == 2
    assert "--objective janus: the run in" in capsys.readouterr().err
    assert main([*base, "--preset", "small"]) == 2
    assert "--preset small: the model of the run" in capsys.readouterr().err
    # the same values as the checkpoint's are fine
    assert main([*base, "--preset", "tiny", "--objective", "ar", "--max-updates", "2"]) == 0


# ---------------------------------------------------------------------------------- corrupt files


@pytest.fixture
def checkpoint(toy_data, tmp_path) -> Path:
    _run(toy_data, tmp_path / "run", cfg=dataclasses.replace(QUICK, max_updates=1))
    return tmp_path / "run" / "last"


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_checkpoint_lists_the_sha256_of_every_file(checkpoint):
    sums = json.loads((checkpoint / CHECKSUMS_FILE).read_text())["sha256"]
    assert set(sums) == {p.name for p in checkpoint.iterdir()} - {CHECKSUMS_FILE}
    assert all(sha256_file(checkpoint / name) == value for name, value in sums.items())


def test_flipped_bytes_in_the_weights_are_reported(checkpoint, capsys, tmp_path):
    _flip_byte(checkpoint / MODEL_FILE, -5)  # inside a tensor: safetensors itself would not notice
    with pytest.raises(JanusError, match=r"model.safetensors: its sha256 does not match"):
        load_model(checkpoint)
    src = tmp_path / "in.txt"
    src.write_text("casa perro\n")
    assert main(["generate", "--checkpoint", str(checkpoint), "--input", str(src), "--device", "cpu"]) == 2
    assert "model.safetensors: its sha256" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["config.json", "spm.model", "trainer_state.json", "trainer_state.safetensors"]
)
def test_every_checkpoint_file_is_verified(checkpoint, name):
    if name.endswith(".json"):
        (checkpoint / name).write_text((checkpoint / name).read_text().replace('"step": 1', '"step": 7'))
    else:
        _flip_byte(checkpoint / name, -3)
    with pytest.raises(JanusError, match=rf"{name}: its sha256 does not match"):
        load_model(checkpoint)
        load_trainer_state(checkpoint)


@pytest.mark.parametrize("damage", ["truncate", "header"], ids=["truncated weights", "bad header"])
def test_unreadable_safetensors_give_an_error_naming_the_file(checkpoint, damage):
    (checkpoint / CHECKSUMS_FILE).unlink()  # as an older checkpoint without checksums
    path = checkpoint / MODEL_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 8 + data[8:])
    with pytest.raises(JanusError, match=r"model.safetensors: not a readable safetensors file"):
        load_model(checkpoint)


def test_a_checkpoint_without_checksums_still_loads(checkpoint):
    (checkpoint / CHECKSUMS_FILE).unlink()
    load_model(checkpoint)
    load_trainer_state(checkpoint)


def _copy_data(toy_data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(toy_data, tmp_path / "data"))


def test_training_refuses_data_whose_checksum_does_not_match(toy_data, tmp_path, capsys):
    data = _copy_data(toy_data, tmp_path)
    _flip_byte(data / "train.tgt.bin", 10)
    argv = train_argv(
        str(data),
        str(tmp_path / "run"),
        "--preset",
        "tiny",
        "--device",
        "cpu",
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train.tgt.bin: its sha256 does not match" in err and "Traceback" not in err


def test_training_refuses_token_ids_outside_the_vocabulary(toy_data, tmp_path):
    data = _copy_data(toy_data, tmp_path)
    meta = json.loads((data / "meta.json").read_text())
    path = data / "valid.src.bin"
    tokens = np.fromfile(path, dtype="<u2")
    tokens[3] = meta["vocab_size"] + 7
    tokens.tofile(path)
    meta["files"][path.name] = sha256_file(path)  # a consistent but wrong folder: the ids are checked too
    (data / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(JanusError, match=rf"valid.src.bin: token id {meta['vocab_size'] + 7} is outside"):
        _run(data, tmp_path / "run")


# ------------------------------------------------------------ trainer state read back


def _resume_argv(data: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(run), "--resume", "--device", "cpu", *extra]


def _edit_state_tensors(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "trainer_state.safetensors"
    save_file(change(load_file(str(path))), str(path))


@pytest.mark.parametrize("damage", ["consumed", "shifted", "reshaped", "foreign"])
def test_a_checksum_valid_but_wrong_trainer_state_is_refused_on_resume(
    toy_data, tmp_path, capsys, resign, damage
):
    """an absurd sampler position or optimizer moments that are not the model's (shifted to
    another parameter, reshaped) were accepted or failed mid-update; each is now one error on resume."""
    run = tmp_path / "run"
    _run(toy_data, run, cfg=dataclasses.replace(QUICK, max_updates=1))
    last = run / "last"
    if damage == "consumed":
        state = json.loads((last / "trainer_state.json").read_text())
        state["sampler"]["consumed"] = 10**12
        (last / "trainer_state.json").write_text(json.dumps(state))
        message = r"trainer_state\.json: sampler\.consumed 1000000000000: an epoch of \d+ pairs"
    elif damage == "shifted":
        _edit_state_tensors(
            last,
            lambda t: {
                k.replace(f"optimizer.{k.split('.')[1]}.", f"optimizer.{int(k.split('.')[1]) + 1}."): v
                for k, v in t.items()
            },
        )
        message = r"trainer_state\.safetensors: tensor optimizer\.\d+\.\w+ (has shape|is for parameter)"
    elif damage == "reshaped":
        _edit_state_tensors(last, lambda t: {k: v.reshape(-1) if v.dim() == 2 else v for k, v in t.items()})
        message = r"trainer_state\.safetensors: tensor optimizer\.\d+\.exp_avg\w* has shape \(\d+,\), but"
    else:
        _edit_state_tensors(last, lambda t: {**t, "model.embed.weight": next(iter(t.values())).clone()})
        message = r"unexpected tensor 'model\.embed\.weight'"
    resign(last)
    assert main(_resume_argv(toy_data, run, "--max-updates", "2")) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


# ---------------------------------------------------------------- last, best and the log


def _kill_at_match(monkeypatch, run: Path, pattern: str, nth: int, exchange: bool) -> list[str]:
    """Like `_inject_kill`, but kill at the `nth` rename or swap whose description matches `pattern`."""
    calls = _inject_kill(monkeypatch, run, at=10**9, exchange=exchange)
    matched = []
    real_replace, real_exchange = os.replace, janusgen.fileio.exchange_paths

    def check(a, b) -> None:
        if re.search(pattern, f"{Path(a).name} -> {Path(b).name}") and str(run) in str(b):
            matched.append(b)
            if len(matched) == nth:
                raise Killed(f"{a} -> {b}")

    def replace(a, b, **kw):
        check(a, b)
        return real_replace(a, b, **kw)

    def swap(a, b):
        check(a, b)
        return real_exchange(a, b)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(janusgen.fileio, "exchange_paths", swap)
    return calls


def _step_of(folder: Path) -> int:
    return json.loads((folder / "config.json").read_text())["step"]


def _best_step(folder: Path) -> int:
    return json.loads((folder / "trainer_state.json").read_text())["best_step"]


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-swap", "two-renames"])
@pytest.mark.parametrize("target", ["last", "best"])
def test_a_kill_between_the_last_and_best_swaps_leaves_them_consistent(
    toy_data, tmp_path, monkeypatch, exchange, target
):
    """a kill between the `last` swap and the `best` swap left `best` at an older step for good
    while `last` named the newer one; `--resume` repaired nothing."""
    cfg = dataclasses.replace(QUICK, lr=1e-3)  # the loss falls at each step: every validation is best
    run = tmp_path / "run"
    _kill_at_match(monkeypatch, run, rf"-> {target}$", nth=2, exchange=exchange)
    with pytest.raises(Killed):
        _run(toy_data, run, cfg=cfg)
    monkeypatch.undo()
    assert main(_resume_argv(toy_data, run, "--max-updates", "2")) == 0
    assert _step_of(run / "last") == 2
    assert _step_of(run / "best") == _best_step(run / "last") == 2


def test_resume_repairs_a_best_that_lags_the_trainer_state(toy_data, tmp_path, capsys):
    """whatever left `best` behind (a kill in an older version), `--resume` puts back the
    checkpoint the trainer state names as the best, even with nothing left to train."""
    cfg = dataclasses.replace(QUICK, lr=1e-3, max_updates=3)
    run = tmp_path / "run"
    _run(toy_data, run, cfg=cfg)
    assert _best_step(run / "last") == 3
    shutil.rmtree(run / "best")
    shutil.copytree(run / "checkpoints" / "step_00000002", run / "best")
    assert main(_resume_argv(toy_data, run, "--max-updates", "3")) == 0
    assert "best" in capsys.readouterr().err
    assert _step_of(run / "best") == 3
    load_model(run / "best")


def test_last_best_and_the_step_folder_share_no_file(toy_data, tmp_path):
    """hard links made one corrupted file spoil `last`, `best` and the newest step at once."""
    run = tmp_path / "run"
    _run(toy_data, run, cfg=dataclasses.replace(QUICK, lr=1e-3))
    folders = [run / "last", run / "best", run / "checkpoints" / "step_00000002"]
    for name in ("model.safetensors", "trainer_state.safetensors", "config.json"):
        inodes = {(f / name).stat().st_ino for f in folders}
        assert len(inodes) == 3, name
        assert all((f / name).stat().st_nlink == 1 for f in folders)
    _flip_byte(run / "last" / MODEL_FILE, -5)
    load_model(run / "best")
    load_model(run / "checkpoints" / "step_00000002")


def test_resume_falls_back_to_the_newest_step_that_passes_its_checksums(toy_data, tmp_path, capsys):
    """a `last` that fails its checksum made `--resume` fail instead of going on from the
    newest good step."""
    run = tmp_path / "run"
    _run(toy_data, run, cfg=dataclasses.replace(QUICK, max_updates=4, validate_every=2))
    _flip_byte(run / "last" / MODEL_FILE, -5)
    _flip_byte(run / "checkpoints" / "step_00000004" / "trainer_state.safetensors", -3)
    assert main(_resume_argv(toy_data, run, "--max-updates", "4")) == 0
    err = capsys.readouterr().err
    assert "resuming from" in err and "step_00000002" in err and "sha256" in err
    assert _step_of(run / "last") == 4
    load_model(run / "last")
    load_trainer_state(run / "last")


def test_a_resumed_run_logs_each_update_once(toy_data, tmp_path, monkeypatch):
    """rows logged after the checkpoint a run resumes from were logged again by the resume."""
    run = tmp_path / "run"
    cfg = dataclasses.replace(QUICK, max_updates=4, validate_every=2)
    _kill_at_match(monkeypatch, run, r"-> step_00000004$", nth=1, exchange=True)
    with pytest.raises(Killed):
        _run(toy_data, run, cfg=cfg)
    monkeypatch.undo()
    with (run / "log.jsonl").open("a") as f:
        f.write('{"step": 5, "split": "tr')  # a line cut short by the kill
    assert _step_of(run / "last") == 2
    _resume(toy_data, run, 4)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert [s for s, split in keys if split == "train"] == [1, 2, 3, 4]
    assert [s for s, split in keys if split == "valid"] == [2, 4]


def test_a_run_killed_before_its_first_checkpoint_says_how_to_start_again(toy_data, tmp_path, capsys):
    """`--resume` said only "nothing to resume" and a plain rerun "already holds a run"."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"split": "train", "step": 1, "loss": 5.0}\n')
    assert main(_resume_argv(toy_data, run)) == 2
    err = capsys.readouterr().err
    assert "before its first checkpoint" in err and "--overwrite" in err
    argv = ["train", "--data", str(toy_data), "--out", str(run), "--preset", "tiny", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "before its first checkpoint" in err and "--overwrite" in err


# ------------------------------------------------------------------------ a diverging run


def _weights_finite(folder: Path) -> bool:
    from safetensors.torch import load_file

    return all(bool(v.isfinite().all()) for v in load_file(str(folder / MODEL_FILE)).values())


def test_a_run_whose_loss_stops_being_finite_stops_with_a_clear_error(toy_data, tmp_path, capsys):
    """`--lr 1e30` trained on to NaN, saved a NaN checkpoint as `best` and printed NaN."""
    run = tmp_path / "run"
    argv = train_argv(
        str(toy_data),
        str(run),
        "--preset",
        "tiny",
        "--objective",
        "ar",
        "--lr",
        "1e30",
        "--warmup",
        "1",
        "--max-updates",
        "6",
        "--validate-every",
        "1",
        "--log-every",
        "3",
        "--max-tokens",
        "512",
        "--valid-bleu-sentences",
        "0",
        "--precision",
        "fp32",
        "--device",
        "cpu",
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "janus: error: update" in err and "not finite" in err and "--lr" in err, err
    assert "Traceback" not in err
    for folder in (run / "best", run / "last", *(run / "checkpoints").glob("step_*")):
        if folder.exists():
            assert _weights_finite(folder), folder


def test_a_non_finite_validation_is_never_saved_as_best(toy_data, tmp_path, monkeypatch):
    """a validation loss that is not finite stops the run before anything is saved."""
    from janusgen.training.trainer import Trainer

    real = Trainer.validate

    def validate(self):
        results = real(self)
        return {**results, "loss": float("nan")} if self.state.step == 2 else results

    monkeypatch.setattr(Trainer, "validate", validate)
    run = tmp_path / "run"
    with pytest.raises(JanusError, match=r"update 2: the validation loss is not finite"):
        _run(toy_data, run, cfg=dataclasses.replace(QUICK, max_updates=3))
    assert _step_of(run / "best") == _step_of(run / "last") == 1
    assert not (run / "checkpoints" / "step_00000002").exists()
