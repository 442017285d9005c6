"""BART-JANUS: a pre-trained Hugging Face `BartForConditionalGeneration` as a JANUS model.

BART is a post-norm encoder-decoder with learned positions (offset 2), a LayerNorm on the embeddings,
GELU, tied embeddings and a fixed final logits bias; ModelConfig has an option for each, so a converted
BART is our JanusTransformer with BART's weights, name for name (`weight_names`). The decoder's weights
serve both streams unchanged: the query stream reads BART's `<mask>` embedding plus the position.

The decoder reads what BART's reads: its decoder_start_token_id (</s> in real checkpoints) before the
target's <s>, and generation forces <s> next where the checkpoint's forced_bos_token_id says so
(ModelConfig.decoder_start_id, forced_bos), in decoding and in the targets fed to the decoder in training.

What reproduces BART exactly is the content stream: a causal decoder over the real tokens. A converted
model therefore takes P_AR from the content stream (`ar_stream="content"`), so that before any
fine-tuning its AR view IS the pre-trained model (same logits, same greedy and beam outputs), and JANUS
fine-tuning adds the NAR (placeholder rows) and AUX (query rows) views on top. The length classifier is
the only new part; it keeps its fresh initialisation.

Needs the `hf` extra (`pip install 'janusgen[hf]'`): `transformers` is imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from janusgen.config import to_dict
from janusgen.data.tokenizer_base import TextTokenizer
from janusgen.errors import JanusError
from janusgen.model.config import ModelConfig, tokenizer_fields
from janusgen.model.transformer import JanusTransformer

BART_POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding: position p reads row p + 2


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise JanusError(
            "converting a Hugging Face model needs transformers: pip install 'janusgen[hf]'"
        ) from None
    return transformers


def start_tokens(hf_model: Any, bos_id: int) -> tuple[int | None, bool]:
    """(decoder_start_id, forced_bos) of ModelConfig from a BartForConditionalGeneration's generation
    config (or, for older files, its model config): the token its decoder reads first (a real BART's is
    </s>; None when it is BOS) and whether generation forces BOS next (`forced_bos_token_id`)."""

    def setting(name: str) -> int | None:
        for source in (getattr(hf_model, "generation_config", None), hf_model.config):
            value = getattr(source, name, None) if source is not None else None
            if value is not None:
                return int(value)
        return None

    start, forced = setting("decoder_start_token_id"), setting("forced_bos_token_id")
    if start is None or start == bos_id:  # the decoder reads BOS first: janusgen's own layout
        if forced is not None:
            raise JanusError(f"the BART starts with BOS and forces token {forced} after it: not supported")
        return None, False
    if forced not in (None, bos_id):
        raise JanusError(f"the BART forces token {forced} as its first output; only BOS ({bos_id}) can be")
    return start, forced == bos_id


def model_config(
    hf: Any,
    tokenizer: Any,
    max_target_length: int | None = None,
    start: tuple[int | None, bool] = (None, False),
) -> ModelConfig:
    """The ModelConfig that is exactly the BART of HF config `hf`, with `tokenizer`'s special ids and
    the decoder start token and forced BOS `start` (see `start_tokens`)."""
    if getattr(hf, "model_type", "bart") != "bart":
        raise JanusError(f"only BART models convert (this one is {hf.model_type!r})")
    pairs = {
        "heads": (hf.encoder_attention_heads, hf.decoder_attention_heads),
        "ffn_dim": (hf.encoder_ffn_dim, hf.decoder_ffn_dim),
    }
    for name, (enc, dec) in pairs.items():
        if enc != dec:
            raise JanusError(
                f"the BART has {name} {enc} in the encoder but {dec} in the decoder (one value needed)"
            )
    if hf.activation_function not in ("gelu", "relu"):
        raise JanusError(f"the BART's activation {hf.activation_function!r} is not gelu or relu")
    if tokenizer.vocab_size != hf.vocab_size:
        raise JanusError(f"the tokenizer has {tokenizer.vocab_size} tokens but the BART {hf.vocab_size}")
    positions = hf.max_position_embeddings - 1  # the encoder's BOS (source_bos) takes the last one
    return ModelConfig(
        **tokenizer_fields(tokenizer),  # its vocab_size is the BART's (checked above)
        d_model=hf.d_model,
        ffn_dim=hf.encoder_ffn_dim,
        heads=hf.encoder_attention_heads,
        encoder_layers=hf.encoder_layers,
        decoder_layers=hf.decoder_layers,
        dropout=float(hf.dropout),
        attention_dropout=float(hf.attention_dropout),
        activation_dropout=float(hf.activation_dropout),
        activation=hf.activation_function,
        pre_norm=False,
        learned_positions=True,
        relative_positions=0,
        max_positions=positions,
        max_target_length=max_target_length or positions - 2,
        position_offset=BART_POSITION_OFFSET,
        embedding_norm=True,
        scale_embedding=bool(hf.scale_embedding),
        tie_output=bool(getattr(hf, "tie_word_embeddings", True)),
        logits_bias=True,
        source_bos=True,
        ar_stream="content",
        decoder_start_id=start[0],
        forced_bos=start[1],
    )


def weight_names(cfg: ModelConfig) -> dict[str, str]:
    """Our parameter name -> the HF BartForConditionalGeneration state_dict name."""
    names = {
        "embed.weight": "model.shared.weight",
        "enc_positions.weight": "model.encoder.embed_positions.weight",
        "dec_positions.weight": "model.decoder.embed_positions.weight",
        "final_logits_bias": "final_logits_bias",
    }
    for ours, theirs in (("enc_embed_norm", "model.encoder"), ("dec_embed_norm", "model.decoder")):
        for p in ("weight", "bias"):
            names[f"{ours}.{p}"] = f"{theirs}.layernorm_embedding.{p}"
    if not cfg.tie_output:
        names["output_projection.weight"] = "lm_head.weight"
    proj = ("q_proj", "k_proj", "v_proj", "out_proj")
    for i in range(cfg.encoder_layers):
        parts = {f"self_attn.{p}": f"self_attn.{p}" for p in proj}
        parts |= {
            "norm1": "self_attn_layer_norm",
            "ffn.fc1": "fc1",
            "ffn.fc2": "fc2",
            "norm2": "final_layer_norm",
        }
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                names[f"encoder_layers.{i}.{ours}.{p}"] = f"model.encoder.layers.{i}.{theirs}.{p}"
    for i in range(cfg.decoder_layers):
        parts = {f"self_attn.{p}": f"self_attn.{p}" for p in proj}
        parts |= {f"cross_attn.{p}": f"encoder_attn.{p}" for p in proj}
        parts |= {
            "norm1": "self_attn_layer_norm",
            "norm2": "encoder_attn_layer_norm",
            "ffn.fc1": "fc1",
            "ffn.fc2": "fc2",
            "norm3": "final_layer_norm",
        }
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                names[f"decoder_layers.{i}.{ours}.{p}"] = f"model.decoder.layers.{i}.{theirs}.{p}"
    return names


def new_parameters(model: JanusTransformer) -> set[str]:
    """The names of our parameters that BART has no counterpart for: the length classifier's, which
    keep their fresh initialisation."""
    length = {id(p) for module in model.length_modules() for p in module.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in length}


def from_hf(hf_model: Any, tokenizer: Any, max_target_length: int | None = None) -> JanusTransformer:
    """A JanusTransformer holding the weights of `hf_model` (a BartForConditionalGeneration)."""
    start = start_tokens(hf_model, tokenizer.bos_id)
    cfg = model_config(hf_model.config, tokenizer, max_target_length, start)
    model = JanusTransformer(cfg)
    theirs = hf_model.state_dict()
    ours = model.state_dict()
    names = weight_names(cfg)
    unmapped = sorted(set(ours) - set(names) - new_parameters(model))
    if unmapped:  # a model option added without a mapping: fail here, not with silently random weights
        raise JanusError(f"no BART weight for {', '.join(unmapped)}")
    for side in ("encoder", "decoder"):  # transformers 5 unties these too when tie_word_embeddings is off
        if not torch.equal(theirs[f"model.{side}.embed_tokens.weight"], theirs["model.shared.weight"]):
            raise JanusError(f"the BART's {side} has its own token embeddings; janusgen shares one matrix")
    with torch.no_grad():
        for name, hf_name in names.items():
            value = theirs[hf_name].reshape(ours[name].shape)  # final_logits_bias: (1, V) -> (V,)
            ours[name].copy_(value.to(ours[name].dtype))
    return model.eval()


SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")  # one file, or shards
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
_NAMES_SHOWN = 5


def _named(names: set[str] | list[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return ", ".join(names[:_NAMES_SHOWN]) + more


def _check_local_weights(folder: Path) -> None:
    """A local --hf folder must hold safetensors weights that open: pickle weights (`pytorch_model.bin`)
    are never loaded, since unpickling runs whatever code the file holds."""
    from safetensors import SafetensorError, safe_open

    found = [name for name in SAFETENSORS_FILES if (folder / name).is_file()]
    if not found:
        pickled = [name for name in PICKLE_FILES if (folder / name).is_file()]
        what = (
            f"only {', '.join(pickled)}, which janusgen never loads (unpickling runs code)"
            if pickled
            else "none"
        )
        raise JanusError(
            f"--hf {folder}: no model.safetensors ({what}); save the model with safetensors "
            "(save_pretrained(..., safe_serialization=True)) and convert that"
        )
    if found[0] == SAFETENSORS_FILES[0]:
        try:
            with safe_open(str(folder / found[0]), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as e:
            raise JanusError(
                f"--hf {folder}: {folder / found[0]} is not a readable safetensors file, truncated or "
                f"corrupt ({e})"
            ) from None


def load_hf(name_or_dir: str) -> tuple[Any, Any]:
    """(BartForConditionalGeneration in fp32, HFTokenizer) of a hub name or a local folder. Only
    safetensors weights are read, and every weight of the BART must come from them."""
    from safetensors import SafetensorError

    from janusgen.data.hf_tokenizer import HFTokenizer

    transformers = _transformers()
    if Path(name_or_dir).is_dir():
        _check_local_weights(Path(name_or_dir))
    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # its table of missing weights: our error names them
    transformers.logging.disable_progress_bar()
    try:
        hf_model, info = transformers.BartForConditionalGeneration.from_pretrained(
            str(name_or_dir), use_safetensors=True, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise JanusError(
            f"--hf {name_or_dir}: cannot load a BartForConditionalGeneration ({first})"
        ) from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()
    # weights of the BART that the file does not hold would be left at their random initialisation
    missing, unexpected = set(info.get("missing_keys") or ()), set(info.get("unexpected_keys") or ())
    mismatched = {str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or ()}
    if missing or unexpected or mismatched:
        parts = [
            f"{len(found)} {what} ({_named(found)})"
            for what, found in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("of another shape", mismatched),
            )
            if found
        ]
        raise JanusError(
            f"--hf {name_or_dir}: its weights are not this BART's: {'; '.join(parts)} weight(s); a converted "
            "model would be partly random"
        )
    return hf_model.float().eval(), HFTokenizer.from_pretrained(name_or_dir)


def convert(
    name_or_dir: str, max_target_length: int | None = None
) -> tuple[JanusTransformer, TextTokenizer, dict[str, Any]]:
    """`janus convert --hf`: the BART `name_or_dir` as a janusgen model, with its tokenizer and the config
    a checkpoint of it records (`checkpoint.save_checkpoint(out, *convert(name))` writes one)."""
    hf_model, tokenizer = load_hf(name_or_dir)
    model = from_hf(hf_model, tokenizer, max_target_length)
    config = {
        "model": to_dict(model.cfg),
        "converted_from": {"hf": str(name_or_dir), "class": "BartForConditionalGeneration"},
    }
    return model, tokenizer, config
