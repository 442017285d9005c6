"""Writing files so that a killed or failed run never leaves something a later run would trust."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from janusgen.errors import JanusError

# A full disk (or quota) while writing: one line naming the device and the file, never a traceback.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_MOUNTS = Path("/proc/self/mounts")


def _mount_point(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def device_of(path: Path) -> str:
    """The file system `path` is on, in words: its source (a device, "tmpfs") and mount point."""
    mount = _mount_point(path)
    source = None
    try:
        for line in _MOUNTS.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1].replace("\\040", " ") == str(mount):
                source = fields[0]  # the last mount there is the one in effect
    except OSError:
        pass
    return f"{source} (mounted at {mount})" if source else str(mount)


def write_error(path: Path, error: OSError) -> JanusError:
    """The one-line error for `error` raised while writing `path`."""
    if error.errno in NO_SPACE_ERRNOS:
        return JanusError(
            f"no space left on {device_of(path)} while writing {path}; free some space and run again"
        )
    return JanusError(f"cannot write {path}: {error.strerror or error}")


def written_file(error: OSError) -> Path | None:
    """The file an OSError was raised writing: a copy's destination (shutil names the source first)."""
    name = error.filename2 or error.filename
    return Path(os.fsdecode(name)) if name else None


def naming(error: OSError, path: Path) -> OSError:
    """`error` with `path` as its file name, where it has none (numpy's and safetensors' writes)."""
    if error.filename is None:
        return OSError(error.errno, error.strerror or str(error), str(path))
    return error


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised inside (a full disk, a read-only file system) into a JanusError naming
    `path` (or the file the error names). The code inside removes whatever it half wrote."""
    try:
        yield
    except OSError as e:
        raise write_error(written_file(e) or Path(path), e) from None


def check_writable_folder(folder: Path, what: str, may_be_missing: bool = False) -> None:
    """Refuse now, before any work, a `folder` where nothing can be written (`what`: the option and value
    it comes from, for the error): a file, a missing folder (unless `may_be_missing`: then the folder it
    would be made in must be writable), a read-only one. Creates nothing."""
    folder = Path(os.path.abspath(folder))
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise JanusError(f"{what}: {existing} exists and is not a folder")
    if existing != folder and not may_be_missing:
        raise JanusError(f"{what}: folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        verb = "write in" if existing == folder else "create"
        raise JanusError(f"{what}: cannot {verb} folder {folder}: {e.strerror or e}") from None


def _in_final(error: OSError, tmp: Path, final: Path) -> Path:
    """The file an error inside the temporary folder `tmp` names, as it would be in `final`."""
    path = written_file(error)
    if path is None:
        return final
    try:
        return final / path.relative_to(tmp)
    except ValueError:
        return path


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final`; on success rename it to `final`.

    On any exception (or a kill) the temporary folder is removed or left under a hidden
    `.name.tmp-*` name that nothing reads, so `final` is either the old complete folder or
    the new complete one.
    """
    final = Path(final)
    parent = final.parent
    if os.path.lexists(final) and not final.is_symlink() and not final.is_dir():
        # swapping a file for a folder would hide it under a temporary name, deleted later (a symlink is
        # replaced by the folder, its target left alone)
        raise JanusError(f"{final} exists and is not a folder; refusing to replace it")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(final, "tmp"), dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result should be an ordinary folder
    except OSError as e:
        raise JanusError(f"cannot write to output folder {final}: {e.strerror or e}") from e
    if final.exists() and not overwrite:
        shutil.rmtree(tmp, ignore_errors=True)
        raise JanusError(f"{final} already exists (pass --overwrite to replace it)")
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists() and exchange_paths(tmp, final):
            # one atomic swap: `final` is never missing, whenever a kill strikes; tmp now holds the old
            shutil.rmtree(tmp, ignore_errors=True)
        elif final.exists():
            # no atomic swap here (not Linux, or a file system without it): for an instant between the
            # two renames `final` is missing; readers that must survive that (resume) fall back
            trash = Path(tempfile.mkdtemp(prefix=temporary_prefix(final, "old"), dir=parent))
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as e:  # a full disk, mostly: nothing half-written is kept
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(_in_final(e, tmp, final), e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (AttributeError, OSError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap `a` and `b` (two folders, say) in one atomic step (Linux renameat2 RENAME_EXCHANGE).
    False where the system or file system cannot; then nothing has changed."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_prefix(final: Path, kind: str) -> str:
    """`.NAME.KIND-PID-`: the name of a temporary sibling of `final` ("tmp": being written, "old": being
    replaced) says which process made it, so a later run tells a killed run's leftovers from a live one's."""
    return f".{Path(final).name}.{kind}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True  # (kill(0) would signal our own group; our own temporaries are not stale)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, another user's
        return True
    return True


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Remove the `.NAME.tmp-PID-*` siblings of `final` whose process is gone (left by a killed run), and
    its `.NAME.old-PID-*` ones too when `final` exists (while it does not, an old one may hold the only
    complete copy). Names without a PID (older janusgen) and those of live processes are left alone.
    Returns what was removed; failing to remove something is not an error."""
    final = Path(final)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(tmp|old)-(\d+)-")
    removed = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or _process_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not final.exists():
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[TextIO]:
    """Yield a UTF-8 text file beside `final` (`.NAME.tmp-PID-*`); on success fsync it and rename it to
    `final`, so `final` is never half-written and a failed run leaves the old one untouched.

    A symlink is written through (its target is replaced, not the link). The new file gets the old
    one's permissions, or the usual ones (0666 less the umask)."""
    final = Path(os.path.realpath(final))
    remove_stale_temporaries(final)
    try:
        mode = stat.S_IMODE(final.stat().st_mode) if final.exists() else 0o666 & ~_umask()
        fd, name = tempfile.mkstemp(prefix=temporary_prefix(final, "tmp"), dir=final.parent)
    except OSError as e:
        raise JanusError(f"cannot write {final}: {e.strerror or e}") from e
    tmp = Path(name)
    try:
        os.chmod(tmp, mode)
        with open(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as e:  # written by the code inside, or the flush: a full disk, mostly
        tmp.unlink(missing_ok=True)
        raise write_error(final, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks copy-on-write (btrfs, XFS, bcachefs)


def copy_file(source: Path, target: Path) -> None:
    """Copy `source` to the new file `target`: a reflink where the file system has them (instant, no
    extra space until one side changes), else a plain copy. Never a hard link: the two must be separate
    files, so that damage to one (a flipped bit, an edit) never reaches the other."""
    with open(source, "rb") as src, open(target, "xb") as dst:  # "x": never over an existing file
        try:
            try:
                import fcntl

                fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
                return
            except (ImportError, OSError):
                pass  # not Linux, another file system, or across devices: copy the bytes
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
        except OSError as e:  # the half copy is ours: remove it
            Path(target).unlink(missing_ok=True)
            raise naming(OSError(e.errno, e.strerror), target) from None
    shutil.copystat(source, target)


_COPY_CHUNK = 1 << 20


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                try:
                    os.fsync(f.fileno())
                except OSError as e:
                    raise naming(e, path) from None


def write_json(path: Path, obj: Any) -> None:
    """Write JSON deterministically (sorted keys, trailing newline) through a temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # raised on, named as `path`; the caller says what it means (see `writing`)
        tmp.unlink(missing_ok=True)
        raise naming(OSError(e.errno, e.strerror), path) from None


def read_json(path: Path) -> Any:
    """The JSON value in `path`; a missing or unreadable file, bytes that are not UTF-8, bad JSON or
    JSON nested past Python's recursion limit are one JanusError naming the file. (What the value must
    look like is checked by `janusgen.schema`.)"""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise JanusError(f"missing file {path}") from e
    except OSError as e:
        raise JanusError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise JanusError(f"{path}: not UTF-8 text ({e.reason} at byte offset {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JanusError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    except RecursionError:
        raise JanusError(f"{path}: JSON nested too deeply to read") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
