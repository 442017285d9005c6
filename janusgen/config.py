"""Configuration: what every config shares (JSON round trip, the value checks, ConfigError) and the data,
decoding and distillation configs. The model, objective and training configs live beside their kinds
(janusgen.model.config, janusgen.objective_config, janusgen.training.config); the named presets and
recipes in janusgen.presets. Components take plain arguments; only recipes (CLI, trainer) read these.

Every config round-trips through JSON with `to_dict` / `from_dict`; an unknown key is an error,
never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from janusgen.errors import JanusError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def unknown_keys(cls: type, values: dict[str, Any]) -> list[str]:
    """The keys of `values` that are no field of the dataclass `cls`, sorted."""
    return sorted(set(values) - {f.name for f in dataclasses.fields(cls)})


def from_dict(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build `cls` from a dict, refusing keys the dataclass does not have."""
    unknown = unknown_keys(cls, values)
    if unknown:
        raise JanusError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    try:
        return cls(**values)
    except ConfigError as e:  # name the file and key, not the command-line option
        raise JanusError(f"{where}: {e.section}.{e.name}={e.value!r}: {e.reason}") from None
    except JanusError as e:
        raise JanusError(f"{where}: {e}") from None


# ------------------------------------------------------------------------------------------ validation
# Every config checks its values in __post_init__, so a bad value is refused wherever it comes from
# (command line, a checkpoint's config.json, Python) before anything is allocated or trained.


class ConfigError(JanusError):
    """A config value out of bounds; the message names it as the command-line option that sets it."""

    def __init__(self, section: str, name: str, value: Any, reason: str, owner: type | None = None) -> None:
        self.section, self.name, self.value, self.reason = section, name, value, reason
        super().__init__(f"{cli_option(section, name, value, owner)}: {reason}")


def cli_option(section: str, name: str, value: Any, owner: type | None = None) -> str:
    """How the user gave `name` = `value` of config `section` (model, objective, train) to `janus train`;
    `owner`, the config class, knows a train field's flag."""
    if section == "train":
        flag = flag_of(owner, name) if owner is not None else "--" + name.replace("_", "-")
        return f"{flag} {value!r}"
    return f"--{section}-option {name}={value!r}"


# ------------------------------------------------------------------------------------ described fields
# A field that is also a command-line option (or a field of an HTTP request) carries its description:
# the CLI builds its flags from these (janusgen.cli.options), the server its whitelist and limits
# (janusgen.serving.server), and DecodeConfig checks its bounds from the same record. Adding an option is
# adding a field.


@dataclass(frozen=True)
class Option:
    """How a config field is offered as an option: help text, and what the CLI and the server need."""

    help: str
    flag: str | None = None  # the command-line spelling; default --name-with-dashes
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None  # bounds of a number (inclusive)
    high: float | None = None
    parse: Callable[[str], Any] | None = None  # the command-line value's parser; default the field's type
    request: bool = True  # a request to `janus serve` may set it (DecodeConfig)
    serve_limit: str | None = None  # the ServeConfig field that caps it in a request (DecodeConfig)


def option(default: Any, help: str, **described: Any) -> Any:
    """A dataclass field with default `default` offered as an option (see Option)."""
    return field(default=default, metadata={"option": Option(help, **described)})


def described_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass `cls` that are offered as options, in order."""
    return [f for f in dataclasses.fields(cls) if "option" in f.metadata]


def option_of(f: dataclasses.Field) -> Option:
    return f.metadata["option"]


def flag_of(cls: type, name: str) -> str:
    """The command-line flag of field `name` of `cls`: its Option's, else --name-with-dashes."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    described = None if f is None else f.metadata.get("option")
    return (described and described.flag) or "--" + name.replace("_", "-")


def parse_duration(text: str) -> float:
    """Seconds in "90s", "15m", "1.5h"; a bare number means minutes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m or 1.5h")
    value, unit = float(match.group(1)), match.group(2) or "m"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def check_int(
    cfg: Any, section: str, name: str, lo: int, hi: int | None = None, optional: bool = False
) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(section, name, value, "must be an integer", type(cfg))
    if value < lo:
        raise ConfigError(section, name, value, f"must be >= {lo}", type(cfg))
    if hi is not None and value > hi:
        raise ConfigError(section, name, value, f"must be <= {hi}", type(cfg))


def check_float(
    cfg: Any,
    section: str,
    name: str,
    lo: float,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    optional: bool = False,
) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(section, name, value, "must be a number", type(cfg))
    if not math.isfinite(value):
        raise ConfigError(section, name, value, "must be a finite number", type(cfg))
    too_low = value < lo or (lo_open and value == lo)
    too_high = hi is not None and (value > hi or (hi_open and value == hi))
    if too_low or too_high:
        if hi is None:
            reason = f"must be {'>' if lo_open else '>='} {lo:g}"
        else:
            reason = f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(section, name, value, reason, type(cfg))


def check_bool(cfg: Any, section: str, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, bool):
        raise ConfigError(section, name, value, "must be true or false", type(cfg))


def check_choice(cfg: Any, section: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(section, name, value, f"choose one of {', '.join(choices)}", type(cfg))


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class BibleConfig:
    """The default verse-aligned corpus built from Debian's SWORD packages."""

    source: str = "sparv"  # module key (see data.bible.MODULES): sparv, web, kjv
    target: str = "web"
    max_words: int = 150  # a verse longer than this (either side, whitespace words) is dropped
    max_ratio: float = 2.5  # drop pairs whose word-count ratio (longer / shorter) exceeds this
    valid_fraction: float = 0.032  # of all references, by hash: about 1,000 verses
    test_fraction: float = 0.064  # about 2,000 verses
    sword_path: str | None = None  # a SWORD library folder to use instead of looking for one
    # Misnumbered verses (the RV1909 module keeps some Spanish verse numbers, e.g. Num 13, Jonah 2): a
    # stretch of 2 * shift_window + 1 pairs whose lengths fit better with one side shifted by 1..max_shift
    # verses (mean |log length ratio| lower by shift_margin) is dropped. max_shift = 0 turns this off.
    shift_window: int = 3
    max_shift: int = 5
    shift_margin: float = 0.2

    def __post_init__(self) -> None:
        # the module keys are checked where the modules are known (data.bible.MODULES)
        if self.source == self.target:
            raise JanusError(f"--source and --target are both {self.source!r}: choose two different texts")
        if self.max_words < 1:
            raise JanusError(f"--max-words must be at least 1, got {self.max_words}")
        if self.max_ratio < 1:
            raise JanusError(f"--max-ratio is longer/shorter, so it must be at least 1, got {self.max_ratio}")
        if self.shift_window < 1 or self.max_shift < 0 or self.shift_margin <= 0:
            raise JanusError(
                f"shift_window ({self.shift_window}) must be at least 1, max_shift ({self.max_shift}) at "
                f"least 0 and shift_margin ({self.shift_margin}) positive"
            )
        if self.valid_fraction < 0 or self.test_fraction < 0 or self.valid_fraction + self.test_fraction >= 1:
            raise JanusError(
                f"valid_fraction ({self.valid_fraction}) and test_fraction ({self.test_fraction}) must be "
                "non-negative and leave something for training"
            )


@dataclass(frozen=True)
class PrepareConfig:
    """Vocabulary and binarization of a parallel corpus."""

    vocab_size: int = 8000
    model_type: str = "unigram"  # SentencePiece: unigram or bpe
    character_coverage: float = 1.0
    spm_max_sentences: int = 2_000_000  # SentencePiece trains on a sample of at most this many lines
    chunk_lines: int = 20_000  # lines encoded per chunk: bounds memory for corpora larger than RAM
    num_threads: int = 2
    spm_threads: int = 4  # SentencePiece training threads, apart from --threads: the model depends on it
    seed: int = 0
    splits: tuple[str, ...] = field(default=("train", "valid", "test"))
    # a pre-trained tokenizer (tokenizer.json, a folder, or a Hugging Face name) used instead of
    # training SentencePiece; vocab_size and model_type are then unused
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        # SentencePiece needs room for janusgen's special pieces (pad, unk, bos, eos, mask: see
        # data.tokenizer.SPECIAL_PIECES) and one piece of text; the corpus's characters may need more.
        _check_number("--vocab-size", self.vocab_size, SPECIAL_PIECE_COUNT + 1, 2**31 - 1)
        if self.model_type not in ("unigram", "bpe"):
            raise JanusError(f"--model-type {self.model_type!r}: choose unigram or bpe")
        _check_number("--threads", self.num_threads, 1, 1024)
        _check_number("PrepareConfig.spm_threads", self.spm_threads, 1, 1024)
        _check_number("PrepareConfig.chunk_lines", self.chunk_lines, 1, 2**31 - 1)
        _check_number("PrepareConfig.spm_max_sentences", self.spm_max_sentences, 1, 2**62)
        _check_number("PrepareConfig.character_coverage", self.character_coverage, 0.5, 1.0, integer=False)
        if self.tokenizer is not None and (not isinstance(self.tokenizer, str) or not self.tokenizer):
            raise JanusError(f"--tokenizer {self.tokenizer!r}: give a tokenizer file, folder or name")


SPECIAL_PIECE_COUNT = 5  # len(data.tokenizer.SPECIAL_PIECES); config.py does not import SentencePiece


# ------------------------------------------------------------------------------------------- decoding


DECODE_MODES = ("ar", "nar", "speculative")
QUANTIZATIONS = ("none", "int8")  # weights for decoding (model/inference.py)
MAX_BEAM = 128  # --beam, --length-beam: the cost grows linearly; past this it is minutes per sentence
MAX_ITERATIONS = 1000  # --iterations: Mask-Predict converges in a few passes
MAX_LEN_A = 1000.0  # outputs are capped at the model's max_positions anyway; this keeps a*|x| finite
MAX_LEN_B = 100_000


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{text!r}: expected integers like -1,0,1") from None


@dataclass(frozen=True)
class DecodeConfig:
    """How to generate: AR beam search (beam 1 = greedy) or NAR Mask-Predict. Every field is an option
    of `janus generate` / `evaluate` and a field of a `janus serve` request (max_tokens excepted), built
    from its description here; __post_init__ checks each against its bounds."""

    mode: str = option(
        "ar",
        "ar (beam search), nar (Mask-Predict), or speculative: the NAR view drafts the rest of the "
        "sentence and the AR view verifies it in one pass, keeping the longest prefix it agrees with; the "
        "output is AR greedy's (--beam is ignored) up to floating-point near-ties (where the two best "
        "tokens are within rounding error, either may be chosen), faster where the two views agree",
        choices=DECODE_MODES,
    )
    beam: int = option(5, "AR beam size; 1 = greedy", low=1, high=MAX_BEAM, serve_limit="max_beam")
    iterations: int = option(
        10, "NAR refinement passes T", low=1, high=MAX_ITERATIONS, serve_limit="max_iterations"
    )
    length_beam: int = option(3, "NAR length candidates l", low=1, high=MAX_BEAM, serve_limit="max_beam")
    length_offsets: tuple[int, ...] | None = option(
        None,
        "NAR: candidates at the predicted length plus these offsets, e.g. -1,0,1 (instead of the top "
        "--length-beam lengths)",
        metavar="LIST",
        low=-MAX_LEN_B,
        high=MAX_LEN_B,
        parse=_int_list,
    )
    rerank: bool = option(False, "NAR: pick the candidate the model's AR view scores best")
    collapse_repeats: bool = option(
        False, 'NAR: keep each run of a repeated token once ("the the" -> "the"), before --rerank'
    )
    early_stop: bool = option(
        False,
        "NAR: stop refining once a pass changes no token (fewer passes; the latency of one sentence)",
    )
    compile: bool = option(
        False,
        "AR search (greedy, beam): the decoder step compiled by torch.compile with static shapes, the "
        "same outputs, about 2.3x faster greedy at batch 1 on a CPU (BENCHMARKS.md); needs a C++ "
        "compiler (else a warning and the eager step), and each new batch size compiles once, in 15-50 s",
        request=False,
    )
    length_penalty: float = option(1.0, "rank by score / length^this", low=-10, high=10)
    max_len_a: float = option(1.2, "output limit a*|x|+b: a", low=0, high=MAX_LEN_A)
    max_len_b: int = option(10, "output limit a*|x|+b: b", low=0, high=MAX_LEN_B)
    # the service sets its own batch budget (--max-batch-tokens), so a request may not
    max_tokens: int = option(6000, "source tokens per batch", low=1, high=2**31 - 1, request=False)

    def __post_init__(self) -> None:
        """Every decoding option in range, named as the CLI spells it: a bad value is one clear error
        instead of empty outputs (max_len_a < 0) or a search that runs for hours (beam 100000)."""
        for f in described_fields(type(self)):
            described, value, flag = option_of(f), getattr(self, f.name), flag_of(type(self), f.name)
            if described.choices is not None:
                if value not in described.choices:
                    raise JanusError(f"{flag} {value!r}: choose {' or '.join(described.choices)}")
            elif f.type == "bool":
                if not isinstance(value, bool):
                    raise JanusError(f"{flag} {value!r}: must be true or false")
            elif f.type == "tuple[int, ...] | None":
                if value is None:
                    continue
                if not 1 <= len(value) <= MAX_BEAM:
                    raise JanusError(f"{flag}: give between 1 and {MAX_BEAM} offsets")
                for item in value:
                    _check_number(flag, item, described.low, described.high)
            else:
                _check_number(flag, value, described.low, described.high, integer=f.type == "int")
        # The shortest source, one token and EOS, has |x| = 2: its limit must allow one output token.
        if 2 * self.max_len_a + self.max_len_b < 1:
            raise JanusError(
                f"--max-len-a {self.max_len_a} --max-len-b {self.max_len_b}: the output limit "
                "a*|x|+b (|x| counts EOS) allows no token; make it at least 1 for a one-token source"
            )


def _check_number(option: str, value: Any, low: float, high: float, integer: bool = True) -> None:
    """Raise a JanusError naming `option` unless `value` is a number (an int if `integer`) in [low, high].

    NaN and infinities fail the range test."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        low, high = (f"{b:g}" if isinstance(b, float) else str(b) for b in (low, high))
        bounds = f"of at least {low}" if float(high) >= 2**31 - 1 else f"between {low} and {high}"
        raise JanusError(f"{option} {value!r}: must be {kind} {bounds}")


def decode_config(**values: Any) -> DecodeConfig:
    """A checked DecodeConfig from keyword options (the server's JSON, the Python API's): an unknown
    option is a clear error, a list becomes the tuple the field holds, and DecodeConfig.__post_init__
    checks every value's range."""
    unknown = unknown_keys(DecodeConfig, values)
    if unknown:
        raise JanusError(f"unknown decoding option(s): {', '.join(unknown)}")
    for f in dataclasses.fields(DecodeConfig):
        value = values.get(f.name)
        if f.type.startswith("tuple[int") and value is not None:
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise JanusError(f"{flag_of(DecodeConfig, f.name)} {value!r}: must be a list of integers")
            values[f.name] = tuple(value)
    return DecodeConfig(**values)


# --------------------------------------------------------------------------------------- distillation


@dataclass(frozen=True)
class DistillConfig:
    """`janus distill`: a teacher's AR view translates a prepared training split (`decode`: beam search)."""

    decode: DecodeConfig = DecodeConfig(mode="ar", beam=5)
    shard_pairs: int = 2048  # pairs per resumable unit: a killed run redoes at most one shard
    dtype: str = "auto"  # of the teacher: auto (the training rule for the hardware), float32, bfloat16

    def __post_init__(self) -> None:
        if self.decode.mode != "ar":
            raise JanusError(f"distillation decodes with the AR view, not --mode {self.decode.mode}")
        _check_number("--shard-pairs", self.shard_pairs, 1, 2**31 - 1)
        if self.dtype not in DISTILL_DTYPES:
            raise JanusError(f"--dtype {self.dtype!r}: choose {', '.join(DISTILL_DTYPES)}")


DISTILL_DTYPES = ("auto", "float32", "bfloat16")
