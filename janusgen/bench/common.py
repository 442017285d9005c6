"""What every step of a bench shares: the layout of a bench folder (--out), the paths its reports store,
the hardware they record and the progress lines on stderr.

A report stores its paths relative to its folder, so that a bench folder moved or copied to another
machine still reads back (`janus bench speed`, `janus bench compare`).
"""

from __future__ import annotations

import logging
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

import janusgen

log = logging.getLogger(__name__)

QUALITY = "quality.json"
SPEED = "speed.json"
PLOT = "valid_bleu.png"


def hardware() -> dict[str, Any]:
    """What the numbers were measured on, and by which janusgen and torch."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
    info = {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "janusgen": janusgen.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _outputs_file(out: Path, system: str, setting_id: str) -> Path:
    """Where a bench in `out` keeps a setting's outputs (one line each); its scores sit beside, as .json."""
    return out / "outputs" / f"{system}.{setting_id}.txt"


def _stored_path(out: Path, path: Path) -> str:
    """`path` as a report in `out` stores it: relative to `out`, so that the folder can be moved or
    copied to another machine (.. where `path` lies outside it)."""
    return os.path.relpath(Path(path).resolve(), Path(out).resolve())


def _read_path(out: Path, stored: str) -> Path:
    """A path a report in `out` stored: relative to `out` (absolute in reports of older versions)."""
    return Path(stored) if Path(stored).is_absolute() else Path(out) / stored


def _checkpoint(out: Path, system: str, entry: dict[str, Any]) -> Path:
    """The checkpoint a system of the report in `out` was evaluated with; where an older report's
    absolute path is gone (the folder was moved), the one the bench trains: `out/{system}/last`."""
    stored = _read_path(out, entry["checkpoint"])
    moved = Path(out) / system / "last"
    return moved if not stored.exists() and moved.exists() else stored


def _read_outputs(text: Path) -> list[str]:
    return text.read_text(encoding="utf-8").split("\n")[:-1]


def _say(text: str) -> None:
    log.info(text)
