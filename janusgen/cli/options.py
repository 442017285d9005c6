"""Command-line options built from config fields: a config dataclass's described fields (Option metadata,
janusgen.config) become flags with their help, metavar, choices and parser, so an option is written once,
on its field."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from janusgen.config import Option, described_fields, flag_of, option_of, parse_duration
from janusgen.errors import JanusError

_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` for argparse: its ValueError becomes argparse's own message ("argument --x: ...")."""

    def parse_argument(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse_argument.__name__ = parse.__name__  # what argparse names in its other messages
    return parse_argument


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    defaults: Any | None,
    only: Sequence[str] | None = None,
    shown: Callable[[str], str | None] | None = None,
) -> None:
    """One flag per described field of dataclass `cls` (or of those named in `only`), its value stored
    under the field's name. `defaults`: an instance whose values the flags default to; None: every flag
    defaults to None, so that `given_values` tells the options given from the rest, and `shown(name)`
    says what the help calls the default."""
    for f in described_fields(cls):
        if only is not None and f.name not in only:
            continue
        described: Option = option_of(f)
        flag = flag_of(cls, f.name)
        default = None if defaults is None else getattr(defaults, f.name)
        if f.type == "bool":  # a switch: it can only turn the option on
            if default:
                raise TypeError(f"{cls.__name__}.{f.name} defaults to true: a switch cannot turn it off")
            parser.add_argument(
                flag, dest=f.name, action="store_const", const=True, default=default, help=described.help
            )
            continue
        text = shown(f.name) if shown is not None else None if default is None else str(default)
        help_text = described.help if text is None else f"{described.help} (default {text})"
        parse = described.parse or _TYPES[f.type.split(" | ")[0]]
        parser.add_argument(
            flag,
            dest=f.name,
            type=_argparse_type(parse) if described.parse is not None else parse,
            default=default,
            metavar=described.metavar,
            choices=described.choices,
            help=help_text,
        )


def option_values(args: argparse.Namespace, cls: type, only: Sequence[str] | None = None) -> dict[str, Any]:
    """The values of the flags `add_options` added for `cls` with defaults, by field name."""
    return {f.name: getattr(args, f.name) for f in described_fields(cls) if only is None or f.name in only}


def given_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags of `cls` given on the command line (added with `defaults=None`), by field name."""
    return {f.name: getattr(args, f.name) for f in described_fields(cls) if getattr(args, f.name) is not None}


def parse_assignments(
    items: list[str], cls: type, option: str, fixed: tuple[str, ...] = ()
) -> dict[str, Any]:
    """KEY=VALUE pairs for dataclass `cls`; values are JSON (numbers, true/false) or plain strings. The
    fields in `fixed` are set from the data and refused (setting them would be silently ignored)."""
    fields = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if sep and key in fixed:
            raise JanusError(
                f"{option} {item}: set from the data (its tokenizer in meta.json), not by an option: "
                f"{', '.join(fixed)} always follow the prepared data"
            )
        if not sep or key not in fields:
            raise JanusError(
                f"{option} {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}"
            )
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


duration = _argparse_type(parse_duration)  # argparse's type for a duration flag (90s, 15m, 1.5h)
