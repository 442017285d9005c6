"""Writing files so that a killed or failed run never leaves something a later run would trust."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from janusgen.errors import JanusError


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final`; on success rename it to `final`.

    On any exception (or a kill) the temporary folder is removed or left under a hidden
    `.name.tmp-*` name that nothing reads, so `final` is either the old complete folder or
    the new complete one.
    """
    final = Path(final)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result should be an ordinary folder
    except OSError as e:
        raise JanusError(f"cannot write to output folder {final}: {e.strerror or e}") from e
    if final.exists() and not overwrite:
        shutil.rmtree(tmp, ignore_errors=True)
        raise JanusError(f"{final} already exists (pass --overwrite to replace it)")
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=parent))
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def write_json(path: Path, obj: Any) -> None:
    """Write JSON deterministically (sorted keys, trailing newline) through a temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise JanusError(f"missing file {path}") from e
    except json.JSONDecodeError as e:
        raise JanusError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
