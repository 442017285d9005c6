"""Training logs: JSON lines (always) and TensorBoard (when installed), written by rank 0 only."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

from janusgen.fileio import atomic_file, write_error, writing

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsLogger:
    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        self.path = out_dir / LOG_FILE
        with writing(self.path):
            out_dir.mkdir(parents=True, exist_ok=True)
            # unbuffered bytes: a failed write (a full disk) is cut back off at once, never left half
            self._jsonl = open(self.path, "ab", buffering=0)  # noqa: SIM115 (closed in close())
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info(
                    "janus: tensorboard is not installed; logging to log.jsonl only "
                    "(pip install janusgen[tensorboard])"
                )
            else:
                with writing(out_dir / TENSORBOARD_DIR):
                    self._tb = SummaryWriter(str(out_dir / TENSORBOARD_DIR))

    def log(self, step: int, split: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, **values}
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        size = os.fstat(self._jsonl.fileno()).st_size
        try:
            written = self._jsonl.write(line)
            if written != len(line):  # a short write: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._jsonl.fileno(), size)
            raise write_error(self.path, e) from None
        if self._tb is not None:
            with writing(self.path.with_name(TENSORBOARD_DIR)):
                for key, value in values.items():
                    if isinstance(value, (int, float)):
                        self._tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def truncate_log(path: Path, step: int) -> int:
    """Drop the rows of the log `path` past `step` (and any line a kill cut short), so that a run resumed
    from its checkpoint at `step` logs each update once. Returns how many lines were dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
            keep = isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step
        except (ValueError, RecursionError):  # a cut line, bytes that are not UTF-8
            keep = False
        if keep:
            kept.append(line.decode("utf-8"))
        elif line.strip():
            dropped += 1
    if dropped:
        with atomic_file(path) as f:
            f.writelines(f"{line}\n" for line in kept)
    return dropped
