"""A janusgen model's AR view as a Hugging Face folder: BART, mBART or Pegasus (export/architecture.py).

The weights keep BART's names (`janusgen.model.bart.weight_names`, the map `janus convert` reads), plus the
final LayerNorms of the pre-norm architectures; the position tables are rewritten for the architecture's
offset. The generation config holds the decoder's start tokens and the restrictions of our search (the
tokens it never outputs, EOS at the length limit), and `check_hf` reloads the folder with transformers
and compares its logits with ours before anything is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from janusgen.decoding.common import ar_prefix
from janusgen.errors import JanusError
from janusgen.export.architecture import Architecture
from janusgen.model.bart import new_parameters, weight_names
from janusgen.model.config import ModelConfig
from janusgen.model.layout import decoder_sequence
from janusgen.model.transformer import JanusTransformer

# the exported model's logits may differ from ours by float rounding only (summation order): a wrong or
# missing weight moves them by O(1)
LOGIT_TOLERANCE = 1e-3


def transformers_module() -> Any:
    try:
        import transformers
    except ImportError:
        raise JanusError("exporting needs transformers: pip install 'janusgen[export]'") from None
    return transformers


def decoder_length(cfg: ModelConfig) -> int:
    """The most tokens the decoder reads and writes (start tokens and EOS included): what our search's
    length cap allows (`max_output_lengths`), as Hugging Face's max_length counts it."""
    return cfg.max_positions + int(cfg.decoder_start_id is not None)


def suppressed_tokens(cfg: ModelConfig) -> list[int]:
    """The ids our search never outputs: pad, <unk>, [MASK], and BOS unless the model may choose it
    first (a BART start token without forced BOS: `DecoderPrefix.free_bos`)."""
    ids = [cfg.pad_id, cfg.unk_id, cfg.mask_id]
    return ids if ar_prefix(cfg).free_bos else [*ids, cfg.bos_id]


def position_table(model: JanusTransformer, side: str, offset: int) -> torch.Tensor:
    """`side`'s position table ("enc" or "dec") with position p at row p + `offset` (the architecture's):
    learned or sinusoidal, ours has it at p + position_offset. Rows before position 0 are kept where we
    have them (a converted BART's unused first two) and zero otherwise."""
    cfg = model.cfg
    module = getattr(model, f"{side}_positions")
    table = module.weight if cfg.learned_positions else module.table  # (rows, d)
    if cfg.position_offset >= offset:
        return table[cfg.position_offset - offset :]
    return torch.cat([table.new_zeros(offset - cfg.position_offset, table.shape[1]), table])


def hf_config(cfg: ModelConfig, arch: Architecture, positions: int) -> Any:
    """The transformers config of `arch` computing `cfg`'s AR view; `positions`: rows of the position
    tables from position 0 on."""
    transformers = transformers_module()
    return getattr(transformers, arch.config_class)(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.heads,
        decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim,
        decoder_ffn_dim=cfg.ffn_dim,
        activation_function=cfg.activation,
        dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout,
        max_position_embeddings=positions,
        scale_embedding=cfg.scale_embedding,
        tie_word_embeddings=cfg.tie_output,
        pad_token_id=cfg.pad_id,
        bos_token_id=cfg.bos_id,
        eos_token_id=cfg.eos_id,
        decoder_start_token_id=ar_prefix(cfg).tokens[0],
        # transformers ignores these two; CTranslate2's converter reads them (as the hub's own BART, mBART
        # and Pegasus configs carry them) to pick its norm placement
        normalize_before=arch.pre_norm,
        normalize_embedding=arch.embedding_norm,
    )


def generation_config(cfg: ModelConfig) -> Any:
    """Hugging Face `generate` set up as `janus generate --mode ar`: the same start tokens (BOS, or the
    decoder start token and a forced BOS), the same banned tokens, EOS forced at the length limit,
    beam 5 with early stopping and length penalty 1 (our defaults; `num_beams=1` is greedy)."""
    transformers = transformers_module()
    banned = suppressed_tokens(cfg)
    # BOS goes into bad_words_ids, whose processor runs before the forced-BOS one (suppress_tokens runs
    # after it and would cancel the forced BOS; transformers refuses that pairing)
    return transformers.GenerationConfig(
        decoder_start_token_id=ar_prefix(cfg).tokens[0],
        bos_token_id=cfg.bos_id,
        eos_token_id=cfg.eos_id,
        pad_token_id=cfg.pad_id,
        forced_bos_token_id=cfg.bos_id if cfg.forced_bos else None,
        forced_eos_token_id=cfg.eos_id,
        suppress_tokens=[i for i in banned if i != cfg.bos_id],
        bad_words_ids=[[cfg.bos_id]] if cfg.bos_id in banned else None,
        num_beams=5,
        early_stopping=True,
        length_penalty=1.0,
        max_length=decoder_length(cfg),
        do_sample=False,
    )


def hf_weights(model: JanusTransformer, arch: Architecture, names: list[str]) -> dict[str, torch.Tensor]:
    """The tensors of Hugging Face's state-dict `names` from our model; a JanusError if one has no source
    or one of our weights (but the length classifier's, which the AR view does not use) goes nowhere."""
    cfg = model.cfg
    ours = model.state_dict()
    source = {theirs: name for name, theirs in weight_names(cfg).items() if name in ours}
    for side, module in (("encoder", "encoder_norm"), ("decoder", "decoder_norm")):
        if cfg.pre_norm:
            for p in ("weight", "bias"):
                source[f"model.{side}.layer_norm.{p}"] = f"{module}.{p}"
        source[f"model.{side}.embed_tokens.weight"] = "embed.weight"  # separate keys, one matrix
    if cfg.tie_output:
        source["lm_head.weight"] = "embed.weight"
    tensors = {theirs: ours[name] for theirs, name in source.items() if theirs in names}
    for side, short in (("encoder", "enc"), ("decoder", "dec")):
        tensors[f"model.{side}.embed_positions.weight"] = position_table(model, short, arch.position_offset)
    if not cfg.logits_bias:
        tensors["final_logits_bias"] = torch.zeros(cfg.vocab_size)
    if "final_logits_bias" in tensors:
        tensors["final_logits_bias"] = tensors["final_logits_bias"].reshape(1, -1)  # (V,) -> (1, V)

    missing = sorted(set(names) - set(tensors))
    used = set(source.values()) | {"enc_positions.weight", "dec_positions.weight", "final_logits_bias"}
    unused = sorted(set(ours) - used - new_parameters(model))
    if missing or unused:  # a model option added without an export mapping: fail, never export garbage
        raise JanusError(
            f"export to {arch.name}: no janusgen weight for {', '.join(missing) or '-'}; "
            f"unexported weights {', '.join(unused) or '-'}"
        )
    return {k: v.detach().float().contiguous() for k, v in tensors.items()}


def write_hf(model: JanusTransformer, arch: Architecture, folder: Path) -> None:
    """Write the weights, config.json and generation_config.json of `model`'s AR view into `folder`."""
    transformers = transformers_module()
    cfg = model.cfg
    positions = position_table(model, "enc", 0).shape[0]
    hf_class = getattr(transformers, arch.model_class)
    hf = hf_class(hf_config(cfg, arch, positions)).eval()
    state = hf.state_dict()
    hf.load_state_dict(hf_weights(model, arch, list(state)), strict=True)
    hf.generation_config = generation_config(cfg)
    hf.save_pretrained(str(folder))


def check_hf(folder: Path, model: JanusTransformer, arch: Architecture) -> float:
    """Reload `folder` with transformers and compare its teacher-forced logits with ours on a random
    probe batch: the largest difference, or a JanusError where it is more than rounding (a transformers
    version that computes the architecture otherwise, e.g. that recomputes Pegasus's position table)."""
    transformers = transformers_module()
    hf = getattr(transformers, arch.model_class).from_pretrained(str(folder)).float().eval()
    src, tgt = probe_batch(model.cfg)
    cfg = model.cfg
    seq = decoder_sequence(tgt, cfg.decoder_start_id)
    model_src = src[:, 1:] if cfg.source_bos else src  # our encoder puts BOS in front itself
    with torch.no_grad():
        ours = model.ar_logits(seq, model.encode(model_src))
        theirs = hf(input_ids=src, decoder_input_ids=seq[:, :-1]).logits
    diff = (ours - theirs).abs().max().item()
    if not diff <= LOGIT_TOLERANCE * max(1.0, ours.abs().max().item()):
        raise JanusError(
            f"export to {arch.name}: transformers {transformers.__version__} computes other logits than the "
            f"model (largest difference {diff:.3g}); the export was not written"
        )
    return diff


def probe_batch(cfg: ModelConfig, rows: int = 2, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) token ids of a fixed random probe, as the exported model reads them: source
    [BOS] x EOS, target BOS y EOS (ordinary tokens only)."""
    special = torch.tensor([cfg.pad_id, cfg.unk_id, cfg.bos_id, cfg.eos_id, cfg.mask_id])
    ordinary = torch.tensor([i for i in range(cfg.vocab_size) if i not in special.tolist()])
    g = torch.Generator().manual_seed(0)
    picks = ordinary[torch.randint(len(ordinary), (2, rows, length), generator=g)]
    bos = torch.full((rows, 1), cfg.bos_id)
    eos = torch.full((rows, 1), cfg.eos_id)
    src = torch.cat([bos, picks[0], eos], dim=1) if cfg.source_bos else torch.cat([picks[0], eos], dim=1)
    return src, torch.cat([bos, picks[1], eos], dim=1)
