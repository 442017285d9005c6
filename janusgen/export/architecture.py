"""Which standard architecture computes a janusgen model's AR view exactly, or why none does.

A model exports when its AR view is a plain causal decoder (`ar_stream="content"`) with absolute
positions only (`relative_positions=0`); its norm placement then picks the architecture:

    pre_norm  embedding_norm  architecture
    false     true            BART     (post-norm, LayerNorm on the embeddings: `janus convert`'s models)
    true      true            mBART    (pre-norm, LayerNorm on the embeddings and after the last layer)
    true      false           Pegasus  (pre-norm, LayerNorm after the last layer only)
    false     false           none     (fairseq's post-norm Transformer, as in paper-iwslt)

Every other option maps exactly onto all three: learned or sinusoidal positions (either is written as
the architecture's position table, from any `position_offset`), `scale_embedding`, tied or untied output,
`logits_bias` (their `final_logits_bias`), ReLU or GELU, `source_bos` (the exported tokenizer puts BOS
before the source), and the decoder start tokens (`decoder_start_id`, `forced_bos`: the generation
config). Only this module decides what exports; it imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

from janusgen.errors import JanusError
from janusgen.model.config import ModelConfig


@dataclass(frozen=True)
class Architecture:
    name: str  # as the docs and messages say it
    model_type: str  # Hugging Face's config.json "model_type"
    model_class: str  # the transformers class of the exported folder
    config_class: str
    pre_norm: bool
    embedding_norm: bool
    position_offset: int  # the row of its position table that position 0 reads (BART's learned table: 2)


BART = Architecture("BART", "bart", "BartForConditionalGeneration", "BartConfig", False, True, 2)
MBART = Architecture("mBART", "mbart", "MBartForConditionalGeneration", "MBartConfig", True, True, 2)
PEGASUS = Architecture(
    "Pegasus", "pegasus", "PegasusForConditionalGeneration", "PegasusConfig", True, False, 0
)
ARCHITECTURES = (BART, MBART, PEGASUS)

EXPORTABLE = (
    "only models with ar_stream=content (BART-JANUS from `janus convert`, or trained with --model-option "
    "ar_stream=content) can be exported"
)


def standard_architecture(cfg: ModelConfig, what: str = "export") -> Architecture:
    """The architecture whose computation is exactly `cfg`'s AR view; a JanusError naming the setting
    that prevents it otherwise (`what` starts the message, e.g. "--format hf")."""
    if cfg.ar_stream != "content":
        raise JanusError(
            f"{what}: the model's AR view uses the query stream (ar_stream={cfg.ar_stream}), which no "
            f"standard decoder computes; {EXPORTABLE}"
        )
    if cfg.relative_positions > 0:
        raise JanusError(
            f"{what}: the decoder's relative-position bias (relative_positions={cfg.relative_positions}) "
            "has no counterpart in BART, mBART or Pegasus; only models trained with --model-option "
            "relative_positions=0 can be exported"
        )
    for arch in ARCHITECTURES:
        if (arch.pre_norm, arch.embedding_norm) == (cfg.pre_norm, cfg.embedding_norm):
            return arch
    raise JanusError(
        f"{what}: a post-norm model without an embedding LayerNorm (pre_norm=false, embedding_norm=false: "
        "fairseq's Transformer, as in paper-iwslt) maps onto no architecture that CTranslate2 converts "
        "(BART needs embedding_norm=true, mBART and Pegasus pre_norm=true)"
    )
