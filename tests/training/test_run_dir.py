"""The run folder's layout (janusgen.training.run_dir) on folders made by hand: which steps are kept,
where a run resumes, what a fresh run refuses and what `--overwrite` and `average --last` touch. The
trainer's own use of it (kills, resume, best) is tested in test_run_safety.py and test_trainer.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from janusgen import checkpoint as ckpt
from janusgen.errors import JanusError
from janusgen.training import run_dir

RESUME_FILES = (ckpt.MODEL_FILE, ckpt.CONFIG_FILE, ckpt.STATE_JSON, ckpt.STATE_TENSORS, "spm.model")


def _folder(path: Path, files: tuple[str, ...] = RESUME_FILES, text: str = "x") -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text(text)
    return path


def _step(run: Path, step: int, files: tuple[str, ...] = RESUME_FILES) -> Path:
    return _folder(run_dir.step_folder(run, step), files, text=str(step))


def test_step_folders_sort_by_step():
    assert run_dir.step_folder(Path("r"), 12) == Path("r/checkpoints/step_00000012")


def test_publish_copies_best_before_last_and_keeps_the_newest_steps(tmp_path):
    for step in (1, 2, 3):
        run_dir.publish(tmp_path, _step(tmp_path, step), is_best=step == 2, keep_last=2)
    assert [p.name for p in run_dir.step_folders(tmp_path)] == ["step_00000002", "step_00000003"]
    assert (tmp_path / "best" / ckpt.MODEL_FILE).read_text() == "2"
    assert (tmp_path / "last" / ckpt.MODEL_FILE).read_text() == "3"
    run_dir.publish(tmp_path, _step(tmp_path, 4), is_best=False, keep_last=0)
    assert run_dir.step_folders(tmp_path) == [] and (tmp_path / "last" / ckpt.MODEL_FILE).read_text() == "4"


def test_last_steps_picks_the_newest_and_names_the_option_at_fault(tmp_path):
    with pytest.raises(JanusError, match="--run .*: no step checkpoints"):
        run_dir.last_steps(tmp_path, 1)
    steps = [_step(tmp_path, s) for s in (5, 10, 15)]
    assert run_dir.last_steps(tmp_path, 2) == steps[1:]
    assert run_dir.last_steps(tmp_path, 3) == steps
    for count in (0, -1, 4):
        with pytest.raises(JanusError, match=f"--last {count}: must be between 1 and 3"):
            run_dir.last_steps(tmp_path, count)


def test_run_of_knows_last_best_and_step_folders(tmp_path):
    run = tmp_path / "run"
    assert run_dir.run_of(run / "last") == run.resolve()
    assert run_dir.run_of(run / "best") == run.resolve()
    assert run_dir.run_of(run_dir.step_folder(run, 3)) == run.resolve()
    assert run_dir.run_of(tmp_path / "avg") is None


def test_resume_point_is_last_else_the_newest_complete_step(tmp_path):
    assert run_dir.resume_point(tmp_path) is None
    _step(tmp_path, 1)
    newest = _step(tmp_path, 2)
    _step(tmp_path, 3, files=RESUME_FILES[:-1])  # no tokenizer: incomplete
    assert run_dir.resume_point(tmp_path) == newest
    last = _folder(tmp_path / "last")
    assert run_dir.resume_point(tmp_path) == last


def test_find_resume_point_says_why_it_passed_each_newer_one_over(tmp_path, monkeypatch):
    _step(tmp_path, 1)
    _step(tmp_path, 2)
    _folder(tmp_path / "last", RESUME_FILES[1:])  # no weights
    damaged = run_dir.step_folder(tmp_path, 2)
    monkeypatch.setattr(ckpt, "checkpoint_problem", lambda p: f"{p} is damaged" if p == damaged else None)
    found, skipped = run_dir.find_resume_point(tmp_path)
    assert found == run_dir.step_folder(tmp_path, 1)
    assert skipped == [f"{tmp_path / 'last'} is incomplete", f"{damaged} is damaged"]
    error = run_dir.nothing_to_resume(tmp_path, skipped)
    assert "no checkpoint is intact" in str(error) and "is damaged" in str(error)


def test_nothing_to_resume_tells_a_run_killed_early_from_an_empty_folder(tmp_path):
    assert "has no last and no checkpoint" in str(run_dir.nothing_to_resume(tmp_path, []))
    (tmp_path / "log.jsonl").write_text("")
    assert "--overwrite instead of --resume" in str(run_dir.nothing_to_resume(tmp_path, []))


def test_a_fresh_run_refuses_a_folder_that_holds_one_unless_told_to_overwrite(tmp_path):
    run_dir.check_fresh(tmp_path, overwrite=False)  # empty: fine
    (tmp_path / "notes.txt").write_text("mine")
    run_dir.check_fresh(tmp_path, overwrite=False)  # not a run's file: fine
    (tmp_path / "log.jsonl").write_text("")
    with pytest.raises(JanusError, match="stopped before its first checkpoint"):
        run_dir.check_fresh(tmp_path, overwrite=False)
    _folder(tmp_path / "last")
    with pytest.raises(JanusError, match="pass --resume to continue it"):
        run_dir.check_fresh(tmp_path, overwrite=False)
    run_dir.check_fresh(tmp_path, overwrite=True)


def test_remove_run_deletes_the_run_and_nothing_else(tmp_path):
    _step(tmp_path, 1)
    _folder(tmp_path / "last")
    (tmp_path / "log.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("mine")
    run_dir.remove_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
