"""`janus export`: a checkpoint's AR view as a Hugging Face folder or a CTranslate2 model.

Only models whose AR view is exactly a standard encoder-decoder export (export/architecture.py says
which: BART, mBART or Pegasus, and why the others cannot); the NAR view and the length classifier stay
behind. Both formats are written to a temporary folder, checked against the model (the exported logits
or token log-probs must equal ours up to rounding), and only then renamed to `--out`, which must not
exist; a model card (README.md) describes it. Needs the `export` extra (`pip install 'janusgen[export]'`:
transformers, ctranslate2, protobuf).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import janusgen
from janusgen.checkpoint import load_model
from janusgen.decoding.common import ar_prefix
from janusgen.errors import JanusError
from janusgen.export.architecture import standard_architecture
from janusgen.fileio import atomic_directory, write_json
from janusgen.model_card import CARD_FILE, export_card

FORMATS = ("hf", "ctranslate2")
INFO_FILE = "janus_export.json"  # what was exported, and how to decode as janusgen does


def export(checkpoint: Path, out: Path, fmt: str) -> dict[str, Any]:
    """Export checkpoint folder `checkpoint` to a new folder `out` in format `fmt` (hf or ctranslate2)."""
    from janusgen.export import ctranslate2 as ct2
    from janusgen.export.hf import check_hf, suppressed_tokens, write_hf
    from janusgen.export.tokenizer import save_hf_tokenizer

    if fmt not in FORMATS:
        raise JanusError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    out = Path(out)
    if out.exists():
        raise JanusError(f"--out {out} already exists; choose another folder")
    model, tokenizer, config = load_model(Path(checkpoint))
    cfg = model.cfg
    arch = standard_architecture(cfg, f"--format {fmt}")
    if fmt == "ctranslate2":
        ct2.ctranslate2_module()  # fail before the work when it is missing
    pieces = [tokenizer.piece(i) for i in range(cfg.vocab_size)]
    info = {
        "architecture": arch.name,
        "class": arch.model_class,
        "format": fmt,
        "checkpoint": str(checkpoint),
        "janusgen_version": janusgen.__version__,
        "source": {"bos": pieces[cfg.bos_id] if cfg.source_bos else None, "eos": pieces[cfg.eos_id]},
        "decoder_start": [pieces[i] for i in ar_prefix(cfg).tokens],
        "suppressed": [pieces[i] for i in suppressed_tokens(cfg)],
    }
    with atomic_directory(out, overwrite=False) as tmp:
        if fmt == "hf":
            write_hf(model, arch, tmp)
            save_hf_tokenizer(tokenizer, cfg, tmp)
            info["max_logit_difference"] = check_hf(tmp, model, arch)
        else:
            with tempfile.TemporaryDirectory(prefix=".janus-export-hf-", dir=out.parent) as hf_dir:
                write_hf(model, arch, Path(hf_dir))
                save_hf_tokenizer(tokenizer, cfg, Path(hf_dir))
                ct2.convert_folder(Path(hf_dir), tmp, pieces, cfg)
            info["max_log_prob_difference"] = ct2.check_ctranslate2(tmp, model, pieces)
        write_json(tmp / INFO_FILE, info)
        (tmp / CARD_FILE).write_text(export_card(config, info), encoding="utf-8")
    return {"out": str(out), **info}
