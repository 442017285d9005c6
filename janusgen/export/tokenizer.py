"""The checkpoint's tokenizer as a Hugging Face fast tokenizer (tokenizer.json + tokenizer_config.json),
which `AutoTokenizer.from_pretrained` opens and which CTranslate2's converter reads its vocabulary from.

Calling it on a text gives what the exported encoder reads: the ids of `TextTokenizer.encode`, then
`</s>`, with `<s>` in front for a model that reads BOS before the source (`source_bos`). A pre-trained
Hugging Face tokenizer (`janus convert`'s) is its own tokenizer.json with that template; a SentencePiece
model is rebuilt as a `tokenizers` model by transformers' own converter (which follows the model's
normalizer, so it encodes as SentencePiece does; tests/test_export.py checks it) and is also copied as
spm.model for those who tokenize with sentencepiece itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from janusgen.data.tokenizer_base import SPM_FILE, TextTokenizer
from janusgen.errors import JanusError
from janusgen.export.hf import transformers_module
from janusgen.model.config import ModelConfig


def backend_tokenizer(tokenizer: TextTokenizer) -> Any:
    """A `tokenizers.Tokenizer` that encodes text as `tokenizer` does (no special tokens added)."""
    from tokenizers import Tokenizer

    if tokenizer.file_name != SPM_FILE:  # a Hugging Face tokenizer.json
        return Tokenizer.from_str(tokenizer.model_bytes.decode("utf-8"))
    return _from_sentencepiece(tokenizer.model_bytes)


def _from_sentencepiece(model_bytes: bytes) -> Any:
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:  # it needs protobuf
        raise JanusError(
            "exporting a SentencePiece vocabulary needs protobuf: pip install 'janusgen[export]'"
        ) from None
    from transformers.convert_slow_tokenizer import SpmConverter

    build = getattr(SpmConverter, "build_tokenizer_from_spm_proto", None)
    if build is None:
        raise JanusError(
            "exporting a SentencePiece vocabulary needs a transformers that converts SentencePiece models "
            "by their own settings (SpmConverter.build_tokenizer_from_spm_proto): pip install -U transformers"
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    pieces = [(p.piece, p.score) for p in proto.pieces]
    unigram = proto.trainer_spec.model_type == sentencepiece_model_pb2.TrainerSpec.UNIGRAM
    # a list of (piece, score) builds a Unigram model, a dict of piece -> id a BPE one (merges by score)
    vocab: Any = pieces if unigram else {piece: i for i, (piece, _) in enumerate(pieces)}
    # legacy=True: the dummy prefix as SentencePiece adds it, also before a text that starts with a space
    # (legacy=False loses it there); the two differ otherwise only around special-token strings in a text
    return build(proto, vocab, legacy=True)


def save_hf_tokenizer(tokenizer: TextTokenizer, cfg: ModelConfig, folder: Path) -> None:
    """Write tokenizer.json and tokenizer_config.json (and spm.model for a SentencePiece vocabulary) of
    `cfg`'s encoder input: [BOS] ids EOS."""
    from tokenizers import processors

    transformers = transformers_module()
    backend = backend_tokenizer(tokenizer)
    specials = {
        name: tokenizer.piece(getattr(tokenizer, f"{name}_id"))
        for name in ("bos", "eos", "unk", "pad", "mask")
    }
    bos, eos = specials["bos"], specials["eos"]
    single = [bos, "$A", eos] if cfg.source_bos else ["$A", eos]
    backend.post_processor = processors.TemplateProcessing(
        single=single,
        pair=[*single, "$B", eos],
        special_tokens=[(bos, tokenizer.bos_id), (eos, tokenizer.eos_id)],
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=cfg.max_positions + int(cfg.source_bos),  # what the encoder takes
        **{f"{name}_token": piece for name, piece in specials.items()},
    )
    ids = {name: fast.convert_tokens_to_ids(piece) for name, piece in specials.items()}
    expected = {name: getattr(tokenizer, f"{name}_id") for name in specials}
    if ids != expected:  # a special piece the rebuilt vocabulary would number otherwise
        raise JanusError(f"the exported tokenizer numbers the special tokens {ids}, the model {expected}")
    fast.save_pretrained(str(folder))
    if tokenizer.file_name == SPM_FILE:
        tokenizer.save(folder / SPM_FILE)
