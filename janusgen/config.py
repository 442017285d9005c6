"""Configuration dataclasses. Components take plain arguments; only recipes (CLI, trainer) read these.

Every config round-trips through JSON with `to_dict` / `from_dict`; an unknown key is an error,
never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from janusgen.errors import JanusError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def from_dict(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build `cls` from a dict, refusing keys the dataclass does not have."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise JanusError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**values)


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


def model_preset(name: str) -> ModelConfig:
    """Named sizes: `tiny` (tests), `small` (~9M parameters with an 8k vocabulary, trains on 2 CPU
    cores), `base` (the IWSLT model of the paper), `transformer-base` (Vaswani et al. base)."""
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
        "base": ModelConfig(),
        "transformer-base": ModelConfig(ffn_dim=2048, heads=8, dropout=0.1),
    }
    if name not in presets:
        raise JanusError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    return presets[name]


MODEL_PRESETS = ("tiny", "small", "base", "transformer-base")


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
    masking: str = "span"  # span (JANUS: fixed ratio, Poisson span lengths) or uniform (CMLM)
    mask_ratio: float = 0.7
    span_lambda: float = 2.0
    random_order: bool = False  # order of the masked tokens in the AUX/G streams: left to right or random
    encode_per_view: bool = False  # encode the source once per view (different dropout), as the authors did


OBJECTIVES = ("ar", "cmlm", "janus")
MASKINGS = ("span", "uniform")


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


@dataclass(frozen=True)
class TrainConfig:
    max_updates: int = 100_000
    time_budget_s: float | None = None  # stop (and save) after this much training time
    max_tokens: int = 4096  # padded tokens per batch and rank (batch size x longest side)
    update_freq: int = 1  # gradient accumulation: batches per update
    lr: float = 5e-4
    warmup_updates: int = 4000
    warmup_init_lr: float = 1e-7
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    weight_decay: float = 0.0001
    clip_norm: float = 1.0  # 0 disables clipping
    precision: str = "fp32"  # fp32, bf16 (autocast, CPU or GPU), fp16 (autocast + loss scaling, GPU only)
    seed: int = 1
    log_every: int = 50
    validate_every: int = 1000  # also the checkpoint interval
    valid_bleu_sentences: int = 200  # quick greedy-AR and one-pass-NAR BLEU on this many valid pairs (0: off)
    keep_last: int = 3  # step checkpoints kept besides `best` and `last`
    best_metric: str = "loss"  # loss (lower is better), bleu_ar or bleu_nar (higher is better)


PRECISIONS = ("fp32", "bf16", "fp16")
BEST_METRICS = ("loss", "bleu_ar", "bleu_nar")


# ------------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class DecodeConfig:
    """How to generate: AR beam search (beam 1 = greedy) or NAR Mask-Predict."""

    mode: str = "ar"  # ar or nar
    beam: int = 5  # AR
    iterations: int = 10  # NAR refinement passes T
    length_beam: int = 3  # NAR length candidates l
    length_offsets: tuple[int, ...] | None = None  # NAR: predicted length + each offset instead of the top-l
    rerank: bool = False  # NAR: choose among the l candidates by the model's own AR view
    length_penalty: float = 1.0
    max_len_a: float = 1.2  # at most a * |source| + b output tokens
    max_len_b: int = 10
    max_tokens: int = 6000  # source tokens per batch (padding counted)


DECODE_MODES = ("ar", "nar")
