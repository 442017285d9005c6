"""A CTranslate2 model from an exported Hugging Face folder, by CTranslate2's own converter.

CTranslate2 keeps the decoder's start token in its config.json but takes the rest of what our search
does as options of `Translator.translate_batch`: `ctranslate2_options` gives them (a forced BOS as the
target prefix, the tokens our search never outputs as suppressed sequences). Two of its loaders set the
start token by the architecture's habit rather than the model's (Pegasus: pad; mBART: none, for a
language code given as prefix): the converted config.json is set to the model's own start token.
`check_ctranslate2` scores a probe batch with the converted model against our teacher-forced log-probs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from janusgen.decoding.common import ar_prefix
from janusgen.errors import JanusError
from janusgen.export.hf import LOGIT_TOLERANCE, probe_batch, suppressed_tokens
from janusgen.model.config import ModelConfig
from janusgen.model.layout import decoder_sequence
from janusgen.model.transformer import JanusTransformer

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def ctranslate2_module() -> Any:
    try:
        import ctranslate2
    except ImportError:
        raise JanusError("--format ctranslate2 needs ctranslate2: pip install 'janusgen[export]'") from None
    return ctranslate2


def convert_folder(hf_folder: Path, out: Path, pieces: list[str], cfg: ModelConfig) -> None:
    """Convert the Hugging Face folder `hf_folder` into `out` (replaced), float32 weights (quantize when
    loading: `compute_type="int8"`), the tokenizer files beside them. `pieces`: the vocabulary, by id."""
    ctranslate2 = ctranslate2_module()
    extra = [name for name in (*TOKENIZER_FILES, "spm.model") if (hf_folder / name).is_file()]
    converter = ctranslate2.converters.TransformersConverter(str(hf_folder), copy_files=extra)
    converter.convert(str(out), force=True)
    config_path = out / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(
        decoder_start_token=pieces[ar_prefix(cfg).tokens[0]],
        bos_token=pieces[cfg.bos_id],
        eos_token=pieces[cfg.eos_id],
        unk_token=pieces[cfg.unk_id],
    )
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def ctranslate2_options(cfg: ModelConfig, pieces: list[str], batch_size: int) -> dict[str, Any]:
    """`translate_batch` keyword arguments that make CTranslate2 search as `janus generate --mode ar`
    does: the forced BOS as target prefix (CTranslate2 returns it as the first output token) and the
    tokens ours never outputs suppressed. The caller adds beam_size, max_decoding_length, length_penalty."""
    options: dict[str, Any] = {
        "suppress_sequences": [[pieces[i]] for i in suppressed_tokens(cfg)],
    }
    if cfg.forced_bos:
        options["target_prefix"] = [[pieces[cfg.bos_id]]] * batch_size
    return options


def check_ctranslate2(folder: Path, model: JanusTransformer, pieces: list[str]) -> float:
    """Score the probe batch with the converted model: the largest difference of a token log-prob from
    ours, or a JanusError where it is more than rounding."""
    ctranslate2 = ctranslate2_module()
    translator = ctranslate2.Translator(str(folder), device="cpu", compute_type="float32")
    cfg = model.cfg
    src, tgt = probe_batch(cfg)
    seq = decoder_sequence(tgt, cfg.decoder_start_id)  # what the decoder reads: (start) BOS y EOS
    # CTranslate2 reads its start token, then the target it is given, and scores each token after the
    # start one, EOS (which it appends) included
    source = [[pieces[i] for i in row] for row in src.tolist()]
    target = [[pieces[i] for i in row] for row in seq[:, 1:-1].tolist()]
    theirs = torch.tensor([r.log_probs for r in translator.score_batch(source, target)])
    with torch.no_grad():
        model_src = src[:, 1:] if cfg.source_bos else src  # our encoder puts BOS in front itself
        logp = model.ar_logits(seq, model.encode(model_src)).float().log_softmax(-1)
        ours = logp.gather(-1, seq[:, 1:, None]).squeeze(-1)  # (B, len(seq) - 1)
    if ours.shape != theirs.shape:
        raise JanusError(
            f"the CTranslate2 model scored {tuple(theirs.shape)} tokens, ours {tuple(ours.shape)}"
        )
    diff = (ours - theirs).abs().max().item()
    if not diff <= LOGIT_TOLERANCE * max(1.0, ours.abs().max().item()):
        raise JanusError(
            f"the CTranslate2 model ({ctranslate2.__version__}) scores tokens otherwise than the model "
            f"(largest log-prob difference {diff:.3g}); the export was not written"
        )
    return diff
