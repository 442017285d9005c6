"""The run folder of `janus train` (its --out): this module alone knows its layout.

    RUN/checkpoints/step_N   a checkpoint per validation; the newest `keep_last` are kept
    RUN/best                 a copy of the best step (TrainConfig.best_metric)
    RUN/last                 a copy of the newest step: where --resume continues
    RUN/log.jsonl, RUN/tensorboard

`publish` writes a step's folder into place (best before last) and prunes old steps; `find_resume_point`
and `repair` choose and restore the checkpoint a run resumes from; `check_fresh` and `remove_run` guard
and clear an --out for a new run; `last_steps` picks what `janus average --run R --last N` averages.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from janusgen import checkpoint as ckpt
from janusgen.data.tokenizer_base import TOKENIZER_FILES
from janusgen.errors import JanusError
from janusgen.training.logger import LOG_FILE, TENSORBOARD_DIR, truncate_log

log = logging.getLogger(__name__)

LAST = "last"
BEST = "best"
CHECKPOINTS = "checkpoints"
# what a training run writes into its folder (all that `janus train --overwrite` deletes)
RUN_FILES = (LAST, BEST, CHECKPOINTS, LOG_FILE, TENSORBOARD_DIR)


def step_folder(run: Path, step: int) -> Path:
    """Where a run keeps the checkpoint of update `step`."""
    return Path(run) / CHECKPOINTS / f"step_{step:08d}"


def step_folders(run: Path) -> list[Path]:
    """The run's step checkpoints, oldest first."""
    return sorted((Path(run) / CHECKPOINTS).glob("step_*"))


def publish(run: Path, step_dir: Path, is_best: bool, keep_last: int) -> None:
    """After `step_dir` is written: copy it to `best` (when it is) and to `last`, then delete all but the
    newest `keep_last` step folders."""
    # `best` before `last`: a kill between the two leaves `last` (where --resume goes on) at the older
    # step, whose rerun writes `best` again; never `last` ahead of a `best` left behind for good
    if is_best:
        ckpt.copy_checkpoint(step_dir, Path(run) / BEST)
    ckpt.copy_checkpoint(step_dir, Path(run) / LAST)
    steps = step_folders(run)
    for old in steps[: max(0, len(steps) - keep_last)]:
        ckpt.remove_checkpoint(old)


def last_steps(run: Path, count: int) -> list[Path]:
    """The newest `count` step checkpoints of `run` (`janus average --run RUN --last COUNT`)."""
    steps = step_folders(run)
    if not steps:
        raise JanusError(f"--run {run}: no step checkpoints in {Path(run) / CHECKPOINTS}")
    if not 1 <= count <= len(steps):
        raise JanusError(
            f"--last {count}: must be between 1 and {len(steps)} (the step checkpoints in {run})"
        )
    return steps[-count:]


def run_of(checkpoint: Path) -> Path | None:
    """The run folder the checkpoint folder `checkpoint` belongs to (RUN/last, RUN/best,
    RUN/checkpoints/step_N), or None for a folder outside a run."""
    path = Path(checkpoint).resolve()
    if path.parent.name == CHECKPOINTS:
        return path.parent.parent
    if path.name in (LAST, BEST):
        return path.parent
    return None


# ---------------------------------------------------------------------------------------------- resume


def _resumable(path: Path) -> bool:
    files = (ckpt.MODEL_FILE, ckpt.CONFIG_FILE, ckpt.STATE_JSON, ckpt.STATE_TENSORS)
    has_tokenizer = any((path / f).is_file() for f in TOKENIZER_FILES)
    return path.is_dir() and has_tokenizer and all((path / f).is_file() for f in files)


def _candidates(run: Path) -> list[Path]:
    return [run / LAST, *reversed(step_folders(run))]


def resume_point(run: Path) -> Path | None:
    """The checkpoint `--resume` continues from: `run/last`, or, where a kill left no complete `last`
    (runs of older versions could lose it between two renames), the newest complete step folder.
    Files are not read: `find_resume_point` also checks them."""
    return next((c for c in _candidates(Path(run)) if _resumable(c)), None)


def find_resume_point(run: Path) -> tuple[Path | None, list[str]]:
    """`resume_point`, passing over a checkpoint that is incomplete or fails its checksums or schemas (a
    damaged `last` falls back to the newest good step); also returns why each newer one was passed over."""
    skipped = []
    for candidate in _candidates(Path(run)):
        if not _resumable(candidate):
            if os.path.lexists(candidate):
                skipped.append(f"{candidate} is incomplete")
            continue
        problem = ckpt.checkpoint_problem(candidate)
        if problem is None:
            return candidate, skipped
        skipped.append(problem)
    return None, skipped


def nothing_to_resume(run: Path, skipped: list[str]) -> JanusError:
    """The error for a --resume that `find_resume_point` found nothing for (`skipped`: its reasons)."""
    if skipped:
        return JanusError(f"nothing to resume in {run}: no checkpoint is intact ({'; '.join(skipped)})")
    started = [name for name in RUN_FILES if os.path.lexists(run / name)]
    if started:
        return JanusError(
            f"nothing to resume in {run}: the run there stopped before its first checkpoint (found "
            f"{', '.join(started)}); start it afresh with --overwrite instead of --resume, and its options"
        )
    return JanusError(f"nothing to resume in {run}: it has no last and no checkpoint in {run / CHECKPOINTS}")


def repair(run: Path, found: Path, skipped: list[str], state: dict[str, Any]) -> None:
    """Before resuming from `found` (whose trainer state is `state`): make it `last` where it is not, make
    `best` the step the state names, and cut the log back to the resumed step (the rows after it are
    logged again). On one rank only."""
    last = run / LAST
    if found != last:
        why = "; ".join(skipped) or f"{last} is missing (a killed run?)"
        log.info(f"janus: {why}; resuming from {found}")
        ckpt.copy_checkpoint(found, last)  # repaired, whatever happens next
    _repair_best(run, found, state)
    truncate_log(run / LOG_FILE, state["step"])


def _repair_best(run: Path, resumed: Path, state: dict[str, Any]) -> None:
    """Make `run/best` the checkpoint that the resumed trainer state names as the best, where a kill (or
    an older janusgen, which wrote `best` after `last`) left it at another step."""
    best_step = state["best_step"]
    if best_step is None:
        return
    best = run / BEST
    try:
        have = ckpt.read_config(best).get("step") if best.is_dir() else None
    except JanusError:
        have = None
    if have == best_step:
        return
    source = resumed if state["step"] == best_step else step_folder(run, best_step)
    if ckpt.checkpoint_problem(source) is not None:
        log.warning(
            f"{best} holds step {have}, not the run's best step {best_step}, whose "
            "checkpoint is gone; it is left as it is"
        )
        return
    log.info(f"janus: {best} held step {have}, not the run's best step {best_step}: copied {source}")
    ckpt.copy_checkpoint(source, best)


# ------------------------------------------------------------------------------------------- a new run


def check_fresh(run: Path, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds another one, unless `overwrite` (which then
    deletes it: `remove_run`)."""
    existing = [name for name in RUN_FILES if os.path.lexists(run / name)]
    if not existing or overwrite:
        return
    if resume_point(run) is None:
        raise JanusError(
            f"{run} already holds a run that stopped before its first checkpoint (found "
            f"{', '.join(existing)}): nothing to resume; pass --overwrite to start afresh, or choose "
            "another --out"
        )
    raise JanusError(
        f"{run} already holds a run (found {', '.join(existing)}); pass --resume to continue "
        "it, --overwrite to delete it and start afresh, or choose another --out"
    )


def remove_run(run: Path) -> None:
    """Delete what a run wrote into `run` (RUN_FILES), each first renamed to a hidden name so that
    nothing half-deleted is ever seen; anything else in `run` stays."""
    for name in RUN_FILES:
        path = Path(run) / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            hidden = path.with_name(f".{name}.deleting")
            shutil.rmtree(hidden, ignore_errors=True)
            os.replace(path, hidden)
            shutil.rmtree(hidden, ignore_errors=True)
