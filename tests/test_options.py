"""Options are written once, on their config field (janusgen.config.Option): the command-line flags of
`janus generate`, `evaluate`, `distill`, `serve` and `train`, the requests `janus serve` accepts and the
limits it sets are all built from the fields. These tests walk every field, so a field added to
DecodeConfig or TrainConfig is covered without touching them."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest

from janusgen.cli import build_parser
from janusgen.cli.decode import decode_config
from janusgen.cli.options import add_options, given_values, option_values
from janusgen.config import (
    ConfigError,
    DecodeConfig,
    described_fields,
    flag_of,
    option,
    option_of,
)
from janusgen.errors import JanusError
from janusgen.training.config import TrainConfig


def changed(cfg: Any) -> dict[str, Any]:
    """A valid value other than the default for every described field of `cfg`."""
    values = {}
    for f in described_fields(type(cfg)):
        described, default = option_of(f), getattr(cfg, f.name)
        if described.choices is not None:
            values[f.name] = next(c for c in reversed(described.choices) if c != default)
        elif f.type == "bool":
            values[f.name] = not default
        elif f.type.startswith("tuple[int"):
            values[f.name] = (-1, 0, 1)
        elif f.type.startswith("int"):
            values[f.name] = (default or 0) + 1
        else:
            values[f.name] = (default or 0.0) + 0.5
    return values


def argv_of(cls: type, values: dict[str, Any]) -> list[str]:
    argv = []
    for name, value in values.items():
        if value is True:
            argv.append(flag_of(cls, name))
        else:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            argv.append(f"{flag_of(cls, name)}={text}")  # "=": a value may start with "-"
    return argv


@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_every_decode_field_is_a_flag(command):
    values = changed(DecodeConfig())
    extra = ["--data", "d"] if command == "evaluate" else []
    args = build_parser().parse_args([command, "--checkpoint", "c", *extra, *argv_of(DecodeConfig, values)])
    assert decode_config(args) == DecodeConfig(**values)
    assert decode_config(build_parser().parse_args([command, "--checkpoint", "c", *extra])) == DecodeConfig()


def test_distill_offers_the_beam_search_fields_with_its_defaults():
    args = build_parser().parse_args(["distill", "--checkpoint", "c", "--data", "d", "--out", "o"])
    from janusgen.config import DistillConfig

    assert args.beam == DistillConfig().decode.beam and not hasattr(args, "iterations")


def test_every_train_field_is_a_flag_and_its_errors_name_it():
    values = changed(TrainConfig())
    values["time_budget_s"] = 90.0  # a duration: given as 90s below
    argv = argv_of(TrainConfig, {**values, "time_budget_s": "90s"})
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", *argv])
    assert given_values(args, TrainConfig) == values
    assert given_values(build_parser().parse_args(["train", "--data", "d", "--out", "o"]), TrainConfig) == {}
    for f in described_fields(TrainConfig):  # a value out of range is named as the flag that sets it
        if f.type in ("int", "float"):
            with pytest.raises(ConfigError, match=f"^{flag_of(TrainConfig, f.name)} -5"):
                TrainConfig(**{f.name: -5})
    assert flag_of(TrainConfig, "warmup_updates") == "--warmup"


def test_a_new_field_is_a_flag_and_is_checked_with_nothing_else_written():
    @dataclass(frozen=True)
    class Extended(DecodeConfig):
        temperature: float = option(1.0, "sampling temperature", low=0.0, high=10.0)

    parser = argparse.ArgumentParser()
    add_options(parser, Extended, Extended())
    assert "sampling temperature (default 1.0)" in " ".join(parser.format_help().split())
    args = parser.parse_args(["--temperature", "0.5", "--beam", "2"])
    assert Extended(**option_values(args, Extended)) == Extended(beam=2, temperature=0.5)
    with pytest.raises(JanusError, match="--temperature 11.0: must be a number between 0 and 10"):
        Extended(temperature=11.0)


def test_the_server_accepts_every_request_field_and_caps_what_its_fields_name():
    pytest.importorskip("starlette")
    from janusgen.serving.config import ServeConfig
    from janusgen.serving.server import BadRequest, parse_request, request_settings

    cfg = ServeConfig()
    values = changed(DecodeConfig())
    wanted = {name: value for name, value in values.items() if option_of_field(name).request}
    assert set(request_settings()) == set(wanted) and "max_tokens" not in wanted
    body = json.dumps(
        {"texts": ["casa"], **{k: list(v) if isinstance(v, tuple) else v for k, v in wanted.items()}}
    )
    texts, decode = parse_request(body.encode(), cfg)
    assert texts == ["casa"]
    assert decode == DecodeConfig(**wanted, max_tokens=cfg.max_batch_tokens)
    with pytest.raises(BadRequest, match="unknown field"):
        parse_request(b'{"texts": ["casa"], "max_tokens": 5}', cfg)
    capped = [f for f in described_fields(DecodeConfig) if option_of(f).serve_limit is not None]
    assert {f.name for f in capped} == {"beam", "length_beam", "iterations"}
    for f in capped:
        most = getattr(cfg, option_of(f).serve_limit)
        with pytest.raises(BadRequest, match=f"at most {most}"):
            parse_request(json.dumps({"texts": ["casa"], f.name: most + 1}).encode(), cfg)


def option_of_field(name: str) -> Any:
    return option_of(next(f for f in dataclasses.fields(DecodeConfig) if f.name == name))
