"""`janus generate`'s file I/O: lines in (a file or stdin), outputs out (a file or stdout), in order, as
batches finish; an output file is written atomically, and never over its own input."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from janusgen.config import DecodeConfig
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.fileio import NO_SPACE_ERRNOS, atomic_file, write_error
from janusgen.progress import quiet


class InputLines:
    """The lines of `--input` or stdin, read as bytes and split on "\\n" only, the same way for both: a
    lone "\\r" stays inside its line, the "\\r" of a CRLF ending is dropped. A line that is not UTF-8 (or
    a read error) ends the lines and is kept in `error`, so that every line before it is still
    translated and written."""

    def __init__(self, stream: Any, name: str) -> None:
        self.stream, self.name = stream, name
        self.error: JanusError | None = None
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        offset = 0  # bytes of the stream before the current line
        try:
            for raw in self.stream:  # a text stream without .buffer (a test's StringIO) gives str lines
                newline, cr = (b"\n", b"\r") if isinstance(raw, bytes) else ("\n", "\r")
                line = raw.removesuffix(newline).removesuffix(cr)
                if isinstance(line, bytes):
                    try:
                        line = line.decode("utf-8")
                    except UnicodeDecodeError as e:
                        self.error = JanusError(
                            f"{self.name}:{self.count + 1}: not UTF-8 text ({e.reason} at byte offset "
                            f"{offset + e.start} of {'the file' if self.name != 'stdin' else 'stdin'})"
                        )
                        return
                    offset += len(raw)
                self.count += 1
                yield line
        except OSError as e:
            self.error = JanusError(f"cannot read {self.name} after line {self.count}: {e.strerror or e}")


def _same_file(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    return a is not None and b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _fstat(stream: Any) -> os.stat_result | None:
    try:
        return os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def check_files(input_path: Path | None, output: Path | None, buffer_lines: int) -> None:
    """Refuse an --output that would overwrite the input (also through a link) or cannot be written, and
    a --buffer-lines below 1: `generate_file`'s arguments, checked before the model is loaded."""
    if buffer_lines < 1:
        raise JanusError(f"--buffer-lines {buffer_lines}: must be at least 1")
    if input_path is not None:
        try:
            source = os.stat(input_path)
        except OSError as e:
            raise JanusError(f"cannot read --input {input_path}: {e.strerror}") from e
    else:
        source = _fstat(sys.stdin)
    if source is not None and not stat.S_ISREG(source.st_mode):
        source = None  # a terminal or pipe: stdout may well be the same terminal
    what = f"--input {input_path}" if input_path is not None else "stdin"
    if output is None:
        if _same_file(source, _fstat(sys.stdout)):
            raise JanusError(f"stdout is the same file as {what}: it would overwrite its own input")
        return
    try:
        target = os.stat(output)
    except OSError:
        target = None
    if _same_file(source, target):
        raise JanusError(
            f"--output {output} is the same file as {what}: it would overwrite its own input; "
            "write to another file"
        )
    if target is not None and stat.S_ISDIR(target.st_mode):
        raise JanusError(f"--output {output} is a folder; give a file name")
    folder = Path(os.path.realpath(output)).parent
    if not folder.is_dir():
        raise JanusError(f"--output {output}: folder {output.parent} does not exist")


def generate_file(
    translator: Translator,
    cfg: DecodeConfig,
    input_path: Path | None,
    output: Path | None,
    scores: bool = False,
    buffer_lines: int = 512,
) -> None:
    """Translate each line of `input_path` (None: stdin) into `output` (None: stdout), `buffer_lines`
    lines at a time, flushed as each group finishes; with `scores`, "score<TAB>text" lines. A line that
    is not UTF-8 stops the run: stdout keeps the lines before it, an output file is not written.
    Check the arguments with `check_files` first."""
    with contextlib.ExitStack() as stack:
        if input_path is None:
            lines = InputLines(getattr(sys.stdin, "buffer", sys.stdin), "stdin")
        else:
            try:
                lines = InputLines(stack.enter_context(open(input_path, "rb")), str(input_path))
            except OSError as e:
                raise JanusError(f"cannot read --input {input_path}: {e.strerror}") from e
        where = "stdout" if output is None else f"--output {output}"
        if output is None:
            sink = sys.stdout
        elif os.path.exists(output) and not os.path.isfile(output):  # /dev/null, a FIFO
            sink = stack.enter_context(open(output, "w", encoding="utf-8"))
        else:  # a temporary file renamed over --output at the end: a failed run leaves the old one
            sink = stack.enter_context(atomic_file(output))
        bar = stack.enter_context(tqdm(desc="generate", unit=" lines", disable=quiet() or None))
        if not bar.disable and input_path is not None and os.path.isfile(input_path):
            bar.total = _count_lines(input_path)  # read once more only for a bar that shows
            bar.refresh()
        try:
            for n, out in enumerate(translator.generate_stream(lines, cfg, buffer_lines), start=1):
                sink.write(f"{out.score:.4f}\t{out.text}\n" if scores else f"{out.text}\n")
                if n % buffer_lines == 0:
                    sink.flush()
                    bar.update(buffer_lines)
            sink.flush()
            bar.update(lines.count - bar.n)
        except BrokenPipeError:
            raise
        except OSError as e:
            if e.errno in NO_SPACE_ERRNOS:
                raise write_error(Path(where.removeprefix("--output ")), e) from None
            raise JanusError(f"cannot write {where}: {e.strerror or e}") from e
        if lines.error is not None:
            done = (
                f"the {lines.count} line(s) before it were written"
                if sink is sys.stdout
                else f"{where} was not written"
            )
            raise JanusError(f"{lines.error}; {done}")


def _count_lines(path: Path) -> int:
    """The number of lines of a file, a last one without "\\n" included: the progress bar's total."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count, last = count + chunk.count(b"\n"), chunk[-1:]
    return count + (last != b"\n")
