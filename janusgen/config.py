"""Configuration dataclasses. Components take plain arguments; only recipes (CLI, trainer) read these.

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

    def __init__(self, section: str, name: str, value: Any, reason: str) -> None:
        self.section, self.name, self.value, self.reason = section, name, value, reason
        super().__init__(f"{cli_option(section, name, value)}: {reason}")


def cli_option(section: str, name: str, value: Any) -> str:
    """How the user gave `name` = `value` of config `section` (model, objective, train) to `janus train`."""
    if section == "train":
        return f"{flag_of(TrainConfig, name)} {value!r}"
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


def _check_int(
    cfg: Any, section: str, name: str, lo: int, hi: int | None = None, optional: bool = False
) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(section, name, value, "must be an integer")
    if value < lo:
        raise ConfigError(section, name, value, f"must be >= {lo}")
    if hi is not None and value > hi:
        raise ConfigError(section, name, value, f"must be <= {hi}")


def _check_float(
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
        raise ConfigError(section, name, value, "must be a number")
    if not math.isfinite(value):
        raise ConfigError(section, name, value, "must be a finite number")
    too_low = value < lo or (lo_open and value == lo)
    too_high = hi is not None and (value > hi or (hi_open and value == hi))
    if too_low or too_high:
        if hi is None:
            reason = f"must be {'>' if lo_open else '>='} {lo:g}"
        else:
            reason = f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(section, name, value, reason)


def _check_bool(cfg: Any, section: str, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, bool):
        raise ConfigError(section, name, value, "must be true or false")


def _check_choice(cfg: Any, section: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(section, name, value, f"choose one of {', '.join(choices)}")


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


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelConfig:
    """Transformer encoder + two-stream decoder. vocab_size and the special ids come from the data."""

    vocab_size: int = 8000
    d_model: int = 512
    ffn_dim: int = 1024
    heads: int = 4
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.3
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    activation: str = "relu"  # relu or gelu
    pre_norm: bool = True
    learned_positions: bool = True  # learned position embeddings; False: sinusoidal
    relative_positions: int = 32  # decoder self-attention bias per clipped distance up to this (0: none)
    max_positions: int = 256  # longest sequence (special tokens included) on either side
    max_target_length: int = (
        254  # largest target length (tokens without BOS/EOS) the length classifier predicts
    )
    pad_id: int = 0
    unk_id: int = 1
    bos_id: int = 2
    eos_id: int = 3
    mask_id: int = 4
    # Options that make the model exactly a BART (janus convert sets them; our presets keep the defaults):
    position_offset: int = 0  # position p reads row p + offset of the position table (BART: 2)
    embedding_norm: bool = False  # a LayerNorm after token + position embeddings, encoder and decoder (BART)
    scale_embedding: bool = True  # token embeddings times sqrt(d_model) (BART: its config's scale_embedding)
    tie_output: bool = True  # the output projection is the token embedding matrix
    logits_bias: bool = False  # a fixed bias added to the logits (BART's final_logits_bias buffer)
    # the encoder reads BOS before the source (BART's <s> ... </s>), one position beyond max_positions
    source_bos: bool = False
    # Which stream gives P_AR: the query stream ([MASK] + position, docs/method.md) or the content
    # stream (a standard causal decoder: a pre-trained BART's decoder, whose logits it reproduces)
    ar_stream: str = "query"
    # initialisation: "default" (PyTorch's per layer; embeddings N(0, 1/d)) or "bert" (every linear and
    # embedding weight N(0, 0.02), biases 0: fairseq's --apply-bert-init, which the authors trained with)
    init: str = "default"
    # The length classifier over the mean-pooled encoder states (classes 0 .. max_target_length):
    # "ours" reads them without back-propagating into the encoder, adds an embedding of the source length
    # and has a bias; "release" is the authors' release's: the rows of a length embedding table are the
    # output weights (logits = pooled @ embed_length^T, no bias) and the length loss reaches the encoder.
    length_predictor: str = "ours"
    # Position of the AR query row that predicts s_{i+1}: "next" (ours: i + 1, the position it predicts)
    # or "same" (the authors' release: i, the position of content row i, whose visibility it shares).
    ar_query_position: str = "next"
    # The token the decoder reads first. None: BOS (janusgen's own models: the decoder reads the target
    # BOS s_1 .. s_n). A converted BART: its decoder_start_token_id, </s>: the decoder reads </s> BOS s_1
    # .. s_n and first predicts BOS, as fairseq's and Hugging Face's BART fine-tuning and generation do.
    decoder_start_id: int | None = None
    # With a decoder_start_id: BOS is forced as the first generated token (Hugging Face's
    # forced_bos_token_id, which bart-large and bart-large-cnn set); otherwise the model chooses it.
    forced_bos: bool = False

    def __post_init__(self) -> None:
        s = "model"
        _check_int(self, s, "vocab_size", 1, 2**31 - 1)
        _check_int(self, s, "d_model", 1, MAX_D_MODEL)
        _check_int(self, s, "ffn_dim", 1, 16 * MAX_D_MODEL)
        _check_int(self, s, "heads", 1, self.d_model)
        if self.d_model % self.heads:
            raise ConfigError(s, "heads", self.heads, f"must divide d_model ({self.d_model})")
        _check_int(self, s, "encoder_layers", 1, MAX_LAYERS)
        _check_int(self, s, "decoder_layers", 1, MAX_LAYERS)
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            _check_float(self, s, name, 0.0, 1.0, hi_open=True)
        _check_choice(self, s, "activation", ACTIVATIONS)
        _check_bool(self, s, "pre_norm")
        _check_bool(self, s, "learned_positions")
        _check_int(self, s, "max_positions", 3, MAX_POSITIONS)  # BOS + one token + EOS
        _check_int(self, s, "relative_positions", 0, self.max_positions)
        _check_int(self, s, "max_target_length", 1, MAX_POSITIONS)
        _check_int(self, s, "position_offset", 0, MAX_POSITIONS)
        for name in ("embedding_norm", "scale_embedding", "tie_output", "logits_bias", "source_bos"):
            _check_bool(self, s, name)
        _check_choice(self, s, "ar_stream", AR_STREAMS)
        _check_choice(self, s, "init", INITS)
        _check_choice(self, s, "length_predictor", LENGTH_PREDICTORS)
        _check_choice(self, s, "ar_query_position", AR_QUERY_POSITIONS)
        _check_bool(self, s, "forced_bos")
        seen: dict[int, str] = {}
        for name in ("pad_id", "unk_id", "bos_id", "eos_id", "mask_id"):
            _check_int(self, s, name, 0, self.vocab_size - 1)
            value = getattr(self, name)
            if value in seen:
                raise ConfigError(s, name, value, f"must differ from {seen[value]}")
            seen[value] = name
        _check_int(self, s, "decoder_start_id", 0, self.vocab_size - 1, optional=True)
        if self.decoder_start_id in (self.bos_id, self.pad_id, self.mask_id):
            raise ConfigError(
                s, "decoder_start_id", self.decoder_start_id, "must not be BOS (leave it unset), pad or mask"
            )
        if self.forced_bos and self.decoder_start_id is None:
            raise ConfigError(
                s, "forced_bos", True, "needs a decoder_start_id (BOS is the start without one)"
            )
        n = self.estimated_parameters()
        if n > MAX_PARAMETERS:
            raise JanusError(
                f"the model would have about {n / 1e9:.1f}B parameters, more than "
                f"{MAX_PARAMETERS / 1e9:.0f}B (d_model {self.d_model}, ffn_dim {self.ffn_dim}, "
                f"{self.encoder_layers}+{self.decoder_layers} layers, vocab_size {self.vocab_size}): "
                "lower them with --model-option"
            )

    def estimated_parameters(self) -> int:
        """About how many parameters the model has (attention, feed-forward, embeddings)."""
        d, f = self.d_model, self.ffn_dim
        encoder = self.encoder_layers * (4 * d * d + 2 * d * f)
        decoder = self.decoder_layers * (8 * d * d + 2 * d * f)
        positions = 3 * self.max_positions + 2 * self.position_offset
        output = 0 if self.tie_output else self.vocab_size
        embeddings = (self.vocab_size + output + positions + self.max_target_length) * d
        return encoder + decoder + embeddings


# the ModelConfig fields a run takes from its data's tokenizer: never set with --model-option
DATA_MODEL_FIELDS = ("vocab_size", "pad_id", "unk_id", "bos_id", "eos_id", "mask_id")
ACTIVATIONS = ("relu", "gelu")
AR_STREAMS = ("query", "content")
INITS = ("default", "bert")
LENGTH_PREDICTORS = ("ours", "release")
AR_QUERY_POSITIONS = ("next", "same")
MAX_D_MODEL = 16384
MAX_LAYERS = 1000
MAX_POSITIONS = 1 << 16
MAX_PARAMETERS = 20_000_000_000


def model_preset(name: str) -> ModelConfig:
    """Named sizes: `tiny` (tests), `small` (~9M parameters with an 8k vocabulary, trains on 2 CPU
    cores), `compact` (small with 3+2 layers, for slow CPUs), `base` (ours at the size of the paper's
    IWSLT model: pre-norm, attention dropout 0.1, a relative-position bias in the decoder, PyTorch's
    initialisation), `paper-iwslt` (the paper's IWSLT model exactly, as the authors' release trains it:
    fairseq's transformer_iwslt_de_en, post-norm, attention dropout 0, learned absolute positions only,
    BERT-style initialisation, dropout 0.3, BOS before the source, the release's length classifier over
    lengths 0 .. 255, AR query rows at their content row's position), `transformer-base` (Vaswani et al.
    base). Every preset but `paper-iwslt` keeps our own choices (`length_predictor` "ours",
    `ar_query_position` "next", no source BOS)."""
    presets = {
        "tiny": ModelConfig(
            d_model=32,
            ffn_dim=64,
            heads=2,
            encoder_layers=2,
            decoder_layers=2,
            dropout=0.0,
            attention_dropout=0.0,
            max_positions=64,
            max_target_length=62,
        ),
        "small": ModelConfig(
            d_model=256,
            ffn_dim=1024,
            heads=4,
            encoder_layers=4,
            decoder_layers=3,
            dropout=0.1,
            attention_dropout=0.0,
        ),
        "compact": ModelConfig(  # small with 3+2 layers: ~1.6x the updates per second on a slow CPU
            d_model=256,
            ffn_dim=1024,
            heads=4,
            encoder_layers=3,
            decoder_layers=2,
            dropout=0.1,
            attention_dropout=0.0,
        ),
        "base": ModelConfig(),
        "paper-iwslt": ModelConfig(
            dropout=0.3,
            attention_dropout=0.0,
            activation_dropout=0.0,
            pre_norm=False,
            learned_positions=True,
            relative_positions=0,
            init="bert",
            source_bos=True,
            length_predictor="release",
            max_target_length=255,  # the release's embed_length has 256 rows: lengths 0 .. 255
            ar_query_position="same",
        ),
        "transformer-base": ModelConfig(ffn_dim=2048, heads=8, dropout=0.1),
    }
    if name not in presets:
        raise JanusError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    return presets[name]


MODEL_PRESETS = ("tiny", "small", "compact", "base", "paper-iwslt", "transformer-base")


# ------------------------------------------------------------------------------------------ objective


@dataclass(frozen=True)
class ObjectiveConfig:
    """Loss weights and masking. `ar`, `cmlm` and `janus` are the same loss with different weights:
    a view whose every term has weight zero is not computed at all."""

    name: str = "janus"
    label_smoothing: float = 0.1
    ar_weight: float = 1.0
    nar_weight: float = 0.5
    aux_weight: float = 0.5
    length_weight: float = 0.1
    kl_ar_nar: float = 1.0
    kl_nar_aux: float = 1.0
    kl_ar_aux: float = 3.0
    # Curriculum: the first `ar_only_updates` updates train L_AR (and L_len) alone, which is 2.5x cheaper
    # per update and leaves the unigram plateau far sooner; the other terms join after that, their KL
    # weights ramped linearly from 0 over the next `kl_warmup_updates` updates. 0 and 0: the plain loss.
    ar_only_updates: int = 0
    kl_warmup_updates: int = 0
    # The same curriculum as fractions of the run (of --time-budget when there is one, else of
    # --max-updates), so that one recipe behaves alike on a slow and a fast machine.
    ar_only_fraction: float = 0.0
    kl_warmup_fraction: float = 0.0
    # span (ours: exactly round(ratio * n) inner tokens, in Poisson spans), release (the authors' release:
    # ceil(ratio * (n + 2)) positions in possibly overlapping Poisson spans, then BOS/EOS unmasked, which
    # leaves about 0.56 of the inner tokens masked, and every <unk> of the target masked too) or uniform
    # (CMLM: k ~ U{1..n} single tokens)
    masking: str = "span"
    # the share of sentences masked after a random cut instead (everything from there to EOS): what a
    # speculative draft sees, a given prefix to continue; 0 is the paper's training
    suffix_fraction: float = 0.0
    mask_ratio: float = 0.7
    span_lambda: float = 2.0
    random_order: bool = False  # order of the masked tokens in the AUX/G streams: left to right or random
    encode_per_view: bool = False  # encode the source once per view (different dropout), as the authors did
    # Which way the KLs with the AR view teach. The paper (and the authors' release) passes gradients
    # through both sides, so a poor NAR/AUX view pulls the AR view towards it. "always": the AR side is
    # a fixed teacher (KL*(AR, NAR) and KL*(AR, AUX) train only the NAR/AUX view); "until_close": so
    # until, at a validation, the other view's cross-entropy on the masked tokens comes within
    # `kl_teacher_margin` nats of the AR view's on the same tokens; from then on both sides, as the paper.
    kl_ar_detach: str = "never"
    kl_teacher_margin: float = 0.5

    def __post_init__(self) -> None:
        s = "objective"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(s, "name", self.name, "must be a non-empty name")
        _check_float(self, s, "label_smoothing", 0.0, 1.0, hi_open=True)
        weights = ("ar_weight", "nar_weight", "aux_weight", "length_weight")
        for name in (*weights, "kl_ar_nar", "kl_nar_aux", "kl_ar_aux"):
            _check_float(self, s, name, 0.0)
        if self.ar_weight == self.nar_weight == self.aux_weight == 0:
            raise JanusError(
                "--objective-option: ar_weight, nar_weight and aux_weight are all 0: nothing to train"
            )
        _check_int(self, s, "ar_only_updates", 0)
        _check_int(self, s, "kl_warmup_updates", 0)
        _check_float(self, s, "ar_only_fraction", 0.0, 1.0)
        _check_float(self, s, "kl_warmup_fraction", 0.0, 1.0)
        for name in ("ar_only_updates", "ar_only_fraction"):
            if getattr(self, name) > 0 and self.ar_weight <= 0:
                raise ConfigError(
                    s, name, getattr(self, name), "needs an objective with an AR term (ar_weight > 0)"
                )
        for counted, fraction in (
            ("ar_only_updates", "ar_only_fraction"),
            ("kl_warmup_updates", "kl_warmup_fraction"),
        ):
            if getattr(self, counted) > 0 and getattr(self, fraction) > 0:
                raise JanusError(
                    f"--objective-option {counted} and {fraction}: give the curriculum in updates or as a "
                    "fraction of the run, not both"
                )
        _check_choice(self, s, "masking", MASKINGS)
        _check_float(self, s, "suffix_fraction", 0.0, 1.0)
        _check_float(self, s, "mask_ratio", 0.0, 1.0, lo_open=True)
        _check_float(self, s, "span_lambda", 0.0, 1000.0, lo_open=True)
        _check_bool(self, s, "random_order")
        _check_bool(self, s, "encode_per_view")
        _check_choice(self, s, "kl_ar_detach", KL_AR_DETACH)
        _check_float(self, s, "kl_teacher_margin", 0.0)

    # Which views a model trained with this objective has learnt: a term or a KL in which the view takes
    # part (the objective computes exactly these; decoding a view that learnt nothing gives noise)
    @property
    def trains_ar(self) -> bool:
        return self.ar_weight > 0 or self.kl_ar_nar > 0 or self.kl_ar_aux > 0

    @property
    def trains_nar(self) -> bool:
        return self.nar_weight > 0 or self.kl_ar_nar > 0 or self.kl_nar_aux > 0

    @property
    def trains_aux(self) -> bool:
        return self.aux_weight > 0 or self.kl_nar_aux > 0 or self.kl_ar_aux > 0


OBJECTIVES = ("ar", "cmlm", "janus")
MASKINGS = ("span", "release", "uniform")
KL_AR_DETACH = ("never", "always", "until_close")


def objective_preset(name: str) -> ObjectiveConfig:
    """`ar`: L_AR alone. `cmlm`: L_NAR + 0.1 L_len with CMLM masking. `janus`: the full loss."""
    if name == "janus":
        return ObjectiveConfig()
    if name == "ar":
        return ObjectiveConfig(
            name="ar",
            nar_weight=0.0,
            aux_weight=0.0,
            length_weight=0.0,
            kl_ar_nar=0.0,
            kl_nar_aux=0.0,
            kl_ar_aux=0.0,
        )
    if name == "cmlm":
        return ObjectiveConfig(
            name="cmlm",
            ar_weight=0.0,
            nar_weight=1.0,
            aux_weight=0.0,
            kl_ar_nar=0.0,
            kl_nar_aux=0.0,
            kl_ar_aux=0.0,
            masking="uniform",
        )
    raise JanusError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")


# ------------------------------------------------------------------------------------------- training


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BEST_METRICS = ("loss", "bleu_ar", "bleu_nar")
AR_TARGETS = ("data", "references")


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. The described fields are `janus train`'s options (janusgen.cli.train)."""

    max_updates: int = option(100_000, "stop after this many updates", metavar="UPDATES")
    time_budget_s: float | None = option(  # stop (and save) after this much training time
        None,
        "stop after this much training time (90s, 15m, 1.5h)",
        flag="--time-budget",
        metavar="DURATION",
        parse=parse_duration,
    )
    # stop (and save) after this update while every schedule still spans max_updates: a run paused at a
    # chosen point (the end of JANUS's AR-only phase, to distil with it) that --resume continues
    stop_at: int | None = option(
        None,
        "pause after this update, the schedules still spanning --max-updates (--resume goes on), e.g. at the "
        "end of the AR-only phase to distil with it",
        metavar="UPDATE",
    )
    max_tokens: int = option(4096, "padded tokens per batch and rank", metavar="TOKENS")
    update_freq: int = option(1, "batches per update (gradient accumulation)", metavar="FREQ")
    lr: float = option(5e-4, "peak learning rate", metavar="LR")
    warmup_updates: int = option(
        4000,
        "linear warmup updates before the inverse square-root decay",
        flag="--warmup",
        metavar="UPDATES",
    )
    # the warmup as a fraction of the run instead (of --time-budget when there is one, else of
    # --max-updates): the learning rate then follows the clock, as the update count differs by machine
    warmup_fraction: float | None = option(
        None,
        "the warmup as a fraction of the run (of --time-budget when given), instead of --warmup",
        metavar="FRACTION",
    )
    warmup_init_lr: float = 1e-7
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    weight_decay: float = option(0.0001, "AdamW weight decay", metavar="DECAY")
    clip_norm: float = option(1.0, "gradient clipping norm (0: off)", metavar="NORM")
    # auto (chosen from the hardware: janusgen.hardware), fp32, bf16 (autocast, CPU or GPU),
    # fp16 (autocast + loss scaling, GPU only)
    precision: str = option(
        "auto",
        f"{', '.join(PRECISIONS)}; auto: bf16 on a GPU that has it (else fp16), on a CPU only where bf16 "
        "is native and faster, else fp32",
        metavar="PRECISION",
        choices=PRECISIONS,
    )
    seed: int = option(1, "random seed (batches, masks, dropout, initialisation)", metavar="SEED")
    log_every: int = option(50, "updates between log lines", metavar="EVERY")
    validate_every: int = option(1000, "updates between validations and checkpoints", metavar="EVERY")
    valid_bleu_sentences: int = option(  # quick greedy-AR and one-pass-NAR BLEU
        200, "valid pairs for the quick BLEU (0: off)", metavar="SENTENCES"
    )
    keep_last: int = option(3, "step checkpoints to keep besides best and last", metavar="LAST")
    best_metric: str = option(  # loss: lower is better; the BLEUs: higher is better
        "loss", f"what `best` means: {', '.join(BEST_METRICS)}", metavar="METRIC", choices=BEST_METRICS
    )
    # the targets the AR view learns from: the data's (`train.tgt`), or, on data written by
    # `janus distill`, the original references it keeps (NAR/AUX on the teacher's outputs, AR on the
    # human translations: distillation for the NAR view without the AR view learning the teacher's errors)
    ar_targets: str = option(
        "data",
        "data: the AR view learns the data's targets; references: on data made by `janus distill`, the "
        "original references it keeps (the NAR/AUX views learn the teacher's outputs); may change with "
        "--resume, to go on from the AR-only phase on data the run's own AR view distilled",
        metavar="TARGETS",
        choices=AR_TARGETS,
    )
    # How the run executes, not what it learns (each may change on --resume):
    data_workers: int | None = option(  # None: workers would take the cores a CPU run needs
        None,
        "DataLoader processes per rank that collate and mask batches ahead (default: 2 on a GPU, 0 on a CPU)",
        metavar="WORKERS",
    )
    deterministic: bool = option(
        False,
        "deterministic kernels (and cuBLAS's fixed workspace): a rerun on the same hardware, software and "
        "number of ranks gives bit-identical weights; batches and masks never depend on the number of ranks, "
        "the order of the gradient sums does",
    )
    compile: bool = option(
        False, "torch.compile the model and loss, with dynamic shapes (batches differ in length)"
    )

    def __post_init__(self) -> None:
        s = "train"
        for name in ("max_updates", "max_tokens", "update_freq", "log_every", "validate_every"):
            _check_int(self, s, name, 1)
        _check_float(self, s, "time_budget_s", 0.0, optional=True)
        _check_int(self, s, "stop_at", 1, optional=True)
        _check_float(self, s, "lr", 0.0, lo_open=True)
        _check_int(self, s, "warmup_updates", 0)
        _check_float(self, s, "warmup_fraction", 0.0, 1.0, lo_open=True, optional=True)
        _check_float(self, s, "warmup_init_lr", 0.0)
        _check_float(self, s, "adam_beta1", 0.0, 1.0, hi_open=True)
        _check_float(self, s, "adam_beta2", 0.0, 1.0, hi_open=True)
        _check_float(self, s, "adam_eps", 0.0, lo_open=True)
        _check_float(self, s, "weight_decay", 0.0)
        _check_float(self, s, "clip_norm", 0.0)
        _check_choice(self, s, "precision", PRECISIONS)
        _check_int(self, s, "seed", 0, 2**63 - 1)
        _check_int(self, s, "valid_bleu_sentences", 0)
        _check_int(self, s, "keep_last", 0)
        _check_choice(self, s, "best_metric", BEST_METRICS)
        _check_choice(self, s, "ar_targets", AR_TARGETS)
        _check_int(self, s, "data_workers", 0, 256, optional=True)
        _check_bool(self, s, "deterministic")
        _check_bool(self, s, "compile")


# -------------------------------------------------------------------------------------------- recipes


def cpu_recipe(
    model: ModelConfig, objective: ObjectiveConfig
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """Defaults that learn within minutes to an hour on a few CPU cores (the demo's; BENCHMARKS.md):
    2,048-token batches (at equal time twice the updates of 4,096 learned faster), lr 2e-3 with a
    warmup of 5% of the run, no dropout (about one epoch: nothing to regularise yet). A JANUS objective
    trains L_AR alone for the first half of the run (an AR-only update costs ~40% of a joint one), then
    JANUS without the KL terms (the cpu recipe): the paper's "without KL" ablation, not the paper's loss,
    and every result it gives must be named so. At these budgets the NAR and AUX distributions are poor
    teachers and the KLs pull the AR view toward them (AR greedy and NAR both better without, at both
    seeds measured at 1,500 updates: BENCHMARKS.md). Fractions are of --time-budget when there is one, so
    the recipe behaves alike on a slow and a fast machine."""
    model = dataclasses.replace(model, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    joint = objective.ar_weight > 0 and (objective.nar_weight > 0 or objective.aux_weight > 0)
    if joint:
        objective = dataclasses.replace(
            objective, ar_only_fraction=0.5, kl_ar_nar=0.0, kl_nar_aux=0.0, kl_ar_aux=0.0
        )
    train = TrainConfig(
        max_tokens=2048, lr=2e-3, warmup_fraction=0.05, validate_every=250, log_every=25, keep_last=1
    )
    return model, objective, train


def paper_recipe(
    model: ModelConfig, objective: ObjectiveConfig
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """The paper-scale defaults (a GPU), as the authors' release's IWSLT script trains: lr 5e-4 with the
    inverse square root schedule after 10,000 warmup updates, Adam betas (0.9, 0.98), no gradient
    clipping, up to 200,000 updates. Its weight decay is not established here: TrainConfig's (ours,
    0.0001) stays. TrainConfig's own defaults (4,000 warmup updates, clipping at 1.0) are our choices,
    which `janus bench quality --budget gpu-ours` keeps."""
    return (
        model,
        objective,
        TrainConfig(max_updates=RELEASE_MAX_UPDATES, warmup_updates=10_000, clip_norm=0.0),
    )


RELEASE_MAX_UPDATES = 200_000  # the authors' IWSLT script's --max-update


def finetune_recipe(
    model: ModelConfig, objective: ObjectiveConfig
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """Fine-tuning a pre-trained model (`janus train --init-from`, BART-JANUS): BART's own summarisation
    settings (fairseq's XSum / CNN-DM recipe): lr 3e-5 with 500 warmup updates, Adam betas
    (0.9, 0.999), weight decay 0.01, clipping at 0.1, and 20k updates; a high lr would erase what
    pre-training learnt. The model (its dropout included) is the checkpoint's."""
    train = TrainConfig(
        max_updates=20_000,
        lr=3e-5,
        warmup_updates=500,
        adam_beta2=0.999,
        weight_decay=0.01,
        clip_norm=0.1,
        validate_every=1000,
    )
    return model, objective, train


RECIPES = {"paper": paper_recipe, "cpu": cpu_recipe, "finetune": finetune_recipe}
# `janus bench quality --budget` (janusgen.bench.budgets builds each) and its updates per system when
# --updates is not given; here so that the command line knows them without importing torch
BENCH_BUDGET_UPDATES = {"cpu": 1500, "cpu-long": 6000, "gpu": RELEASE_MAX_UPDATES, "gpu-ours": 50_000}
DEMO_TIME_BUDGET_S = 17 * 60.0  # `janus demo`: training time (README: 17 minutes; under 25 in all on 2 cores)


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
