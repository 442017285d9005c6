"""The model's configuration: the architecture of the encoder and the two-stream decoder, checked on
construction (an unknown key or a value out of range is an error, named as the option that sets it)."""

from __future__ import annotations

from dataclasses import dataclass

from janusgen.config import ConfigError, check_bool, check_choice, check_float, check_int
from janusgen.data.tokenizer_base import TextTokenizer
from janusgen.errors import JanusError


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
        check_int(self, s, "vocab_size", 1, 2**31 - 1)
        check_int(self, s, "d_model", 1, MAX_D_MODEL)
        check_int(self, s, "ffn_dim", 1, 16 * MAX_D_MODEL)
        check_int(self, s, "heads", 1, self.d_model)
        if self.d_model % self.heads:
            raise ConfigError(s, "heads", self.heads, f"must divide d_model ({self.d_model})")
        check_int(self, s, "encoder_layers", 1, MAX_LAYERS)
        check_int(self, s, "decoder_layers", 1, MAX_LAYERS)
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            check_float(self, s, name, 0.0, 1.0, hi_open=True)
        check_choice(self, s, "activation", ACTIVATIONS)
        check_bool(self, s, "pre_norm")
        check_bool(self, s, "learned_positions")
        check_int(self, s, "max_positions", 3, MAX_POSITIONS)  # BOS + one token + EOS
        check_int(self, s, "relative_positions", 0, self.max_positions)
        check_int(self, s, "max_target_length", 1, MAX_POSITIONS)
        check_int(self, s, "position_offset", 0, MAX_POSITIONS)
        for name in ("embedding_norm", "scale_embedding", "tie_output", "logits_bias", "source_bos"):
            check_bool(self, s, name)
        check_choice(self, s, "ar_stream", AR_STREAMS)
        check_choice(self, s, "init", INITS)
        check_choice(self, s, "length_predictor", LENGTH_PREDICTORS)
        check_choice(self, s, "ar_query_position", AR_QUERY_POSITIONS)
        check_bool(self, s, "forced_bos")
        seen: dict[int, str] = {}
        for name in ("pad_id", "unk_id", "bos_id", "eos_id", "mask_id"):
            check_int(self, s, name, 0, self.vocab_size - 1)
            value = getattr(self, name)
            if value in seen:
                raise ConfigError(s, name, value, f"must differ from {seen[value]}")
            seen[value] = name
        check_int(self, s, "decoder_start_id", 0, self.vocab_size - 1, optional=True)
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


def tokenizer_fields(tokenizer: TextTokenizer) -> dict[str, int]:
    """The DATA_MODEL_FIELDS of a model reading `tokenizer`'s ids (the tokenizer has them by the same
    names), for `ModelConfig(...)` or `dataclasses.replace`."""
    return {name: getattr(tokenizer, name) for name in DATA_MODEL_FIELDS}


ACTIVATIONS = ("relu", "gelu")
AR_STREAMS = ("query", "content")
INITS = ("default", "bert")
LENGTH_PREDICTORS = ("ours", "release")
AR_QUERY_POSITIONS = ("next", "same")
MAX_D_MODEL = 16384
MAX_LAYERS = 1000
MAX_POSITIONS = 1 << 16
MAX_PARAMETERS = 20_000_000_000
