"""The `janus` command: one module per command group, each command parses its options and calls one
function of the package, where the work lives.

    janus [--quiet | --verbose]
          {demo,data,train,distill,generate,evaluate,serve,average,convert,push,export,bench}

Results go to stdout; progress, information and warnings go to stderr through the `janusgen` logger.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from janusgen.cli import bench, convert, data, decode, demo, train
from janusgen.errors import JanusError

# the order `janus --help` lists the commands in
_GROUPS = (demo, data, train, decode, convert, bench)
_COMMANDS = "{demo,data,train,distill,generate,evaluate,serve,average,convert,push,export,bench}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus",
        description="Train and run JANUS models: one encoder-decoder, "
        "autoregressive and non-autoregressive decoding.",
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress"
    )
    loudness.add_argument("-v", "--verbose", action="store_true", help="also debugging messages on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar=_COMMANDS)
    for group in _GROUPS:
        group.add_commands(sub)
    return parser


class _StderrHandler(logging.Handler):
    """A log record as one line on the stderr of the moment (tests swap it), written past any open
    progress bar; a warning reads "janus: warning: ...", like the errors."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"janus: warning: {text}"
        try:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)
        except Exception:
            self.handleError(record)


def configure_logging(level: int) -> None:
    """Send the `janusgen` logger's records of `level` and above to stderr (once, however often
    `main` runs in a process)."""
    logger = logging.getLogger("janusgen")
    logger.setLevel(level)
    logger.propagate = False
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())


def _error(message: str) -> int:
    """Print `janus: error: message` on a line of its own (a progress bar the failure interrupted is
    closed first) and return the exit status of a usage or input error."""
    with contextlib.suppress(Exception):
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    print(f"janus: error: {message}", file=sys.stderr)
    return 2


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """Python warnings (a truncated input, bf16 on a CPU that emulates it) as one line, like errors."""
    logging.getLogger("janusgen").warning("%s", message)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except JanusError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        print("janus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`janus generate ... | head -1`): stop quietly, as `yes | head -1` does.
        # As Python's documentation recommends, point stdout at devnull so that the flush at exit
        # does not fail again.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            stdout = sys.stdout.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout)
            os.close(devnull)
        return 141  # 128 + SIGPIPE, the status of a command a closed pipe stops
    except OSError as e:  # a file system error no command turned into a JanusError: still one line
        from janusgen.fileio import write_error, written_file

        return _error(str(write_error(written_file(e) or Path.cwd(), e)))
