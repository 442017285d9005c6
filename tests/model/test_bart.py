"""BART-JANUS conversion: a tiny random BartForConditionalGeneration, built and saved here (no network),
converted with `janus convert`, must give the same logits and the same greedy / beam outputs as HF."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from janusgen.checkpoint import load_model  # noqa: E402
from janusgen.data.hf_tokenizer import HFTokenizer  # noqa: E402
from janusgen.decoding.api import decode_ar  # noqa: E402
from janusgen.model.bart import NEW_PARAMETERS, convert, weight_names  # noqa: E402
from janusgen.model.layout import ar_view  # noqa: E402
from janusgen.model.transformer import JanusTransformer  # noqa: E402

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a summary of the news in one short sentence",
    "who wrote the book about the fox and the dog ?",
    "news of the day : the dog sleeps",
]


def build_tokenizer(folder: Path) -> None:
    """A byte-level BPE with BART's special tokens: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=120,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXTS * 5, trainer)
    tok.add_special_tokens(["<mask>"])
    tok.save(str(folder / "tokenizer.json"))


def build_bart(folder: Path, vocab_size: int, tied: bool = True) -> None:
    cfg = transformers.BartConfig(
        tie_word_embeddings=tied,
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(cfg)
    with torch.no_grad():  # move every weight off its init (layer norms at 1/0, zero biases)
        for p in model.parameters():
            p.add_(0.15 * torch.randn_like(p))
        model.final_logits_bias.normal_(0.0, 1.0)
        # some outputs end before the limit, some do not (values found by trying)
        model.final_logits_bias[0, cfg.eos_token_id] = 2.0 if not tied else 3.5
        model.model.decoder.embed_positions.weight.normal_(0.0, 1.0)  # outputs that change along the sentence
        if not tied:  # only the output projection is untied (BART's encoder and decoder share `shared`)
            model.model.encoder.embed_tokens.weight.copy_(model.model.shared.weight)
            model.model.decoder.embed_tokens.weight.copy_(model.model.shared.weight)
    model.save_pretrained(str(folder))


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def bart_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bart")
    build_tokenizer(folder)
    build_bart(folder, HFTokenizer.from_file(folder / "tokenizer.json").vocab_size, tied=request.param)
    return folder


@pytest.fixture(scope="module")
def converted(bart_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "bart-janus"
    convert(str(bart_dir), out)
    return out


def hf_model(bart_dir: Path):
    return transformers.BartForConditionalGeneration.from_pretrained(str(bart_dir)).float().eval()


def batch(tok: HFTokenizer, texts: list[str], bos: bool) -> torch.Tensor:
    """Right-padded ids + EOS, with BOS in front if `bos`."""
    rows = [([tok.bos_id] if bos else []) + ids + [tok.eos_id] for ids in tok.encode(texts)]
    width = max(map(len, rows))
    return torch.tensor([r + [tok.pad_id] * (width - len(r)) for r in rows])


def test_every_weight_is_mapped_or_new(converted: Path) -> None:
    model, tok, config = load_model(converted)
    assert isinstance(tok, HFTokenizer) and (converted / "tokenizer.json").is_file()
    assert set(model.state_dict()) == set(weight_names(model.cfg)) | set(NEW_PARAMETERS)
    assert config["converted_from"]["class"] == "BartForConditionalGeneration"
    cfg = model.cfg
    assert (cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.unk_id, cfg.mask_id) == (1, 0, 2, 3, tok.vocab_size - 1)


def test_teacher_forced_logits_equal_hf(bart_dir: Path, converted: Path) -> None:
    """The AR view (content stream, as converted) reproduces HF's logits; so do the content rows of the
    JANUS query-stream AR view, whose content rows see exactly what BART's decoder rows see."""
    model, tok, _ = load_model(converted)
    hf = hf_model(bart_dir)
    src, tgt = TEXTS[:3], TEXTS[1:4]
    src_ours, src_hf = batch(tok, src, bos=False), batch(tok, src, bos=True)
    tgt_ids = batch(tok, tgt, bos=True)
    with torch.no_grad():
        expected = hf(
            input_ids=src_hf,
            attention_mask=src_hf != tok.pad_id,
            decoder_input_ids=tgt_ids[:, :-1],
            decoder_attention_mask=tgt_ids[:, :-1] != tok.pad_id,
        ).logits
        enc = model.encode(src_ours)
        got = model.ar_logits(tgt_ids, enc)
        view = ar_view(tgt_ids, tok.pad_id, tok.mask_id)
        content_rows = model.logits(model.decode(view, enc)[:, : view.num_content])
    valid = tgt_ids[:, 1:] != tok.pad_id
    diff = (got - expected)[valid].abs().max().item()
    print(f"max |logit difference| ours vs HF BART: {diff:.2e}")
    assert diff < 1e-5
    assert (content_rows - expected)[valid].abs().max().item() < 1e-5


def test_query_stream_view_is_not_the_hf_path(converted: Path) -> None:
    """With ar_stream "query" the same weights predict from [MASK] + position: a different function of
    the prefix (what JANUS fine-tuning trains), not BART's: why a conversion uses the content stream."""
    model, tok, _ = load_model(converted)
    query = JanusTransformer(dataclasses.replace(model.cfg, ar_stream="query")).eval()
    query.load_state_dict(model.state_dict())
    src, tgt = batch(tok, TEXTS[:2], bos=False), batch(tok, TEXTS[2:4], bos=True)
    with torch.no_grad():
        enc = model.encode(src)
        assert not torch.allclose(query.ar_logits(tgt, enc), model.ar_logits(tgt, enc), atol=1e-3)


def generation_config(tok: HFTokenizer, **kw):
    """HF generation without BART's defaults (forced BOS/EOS, n-gram blocking): ours has none of them;
    pad, <unk>, <s> and <mask> are never outputs here, as in our search."""
    return transformers.GenerationConfig(
        do_sample=False,
        decoder_start_token_id=tok.bos_id,
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
        suppress_tokens=[tok.pad_id, tok.unk_id, tok.bos_id, tok.mask_id],
        no_repeat_ngram_size=0,
        min_length=0,
        **kw,
    )


def hf_outputs(sequences: torch.Tensor, tok: HFTokenizer, limit: int) -> list[list[int]]:
    """HF's generated ids (after the start token) up to, without, the first EOS, at most `limit` (ours
    stops there with a forced EOS, HF with max_new_tokens = limit + 1)."""
    out = []
    for row in sequences[:, 1:].tolist():
        out.append((row[: row.index(tok.eos_id)] if tok.eos_id in row else row)[:limit])
    return out


@pytest.mark.parametrize("limit", [6, 30])
def test_greedy_equals_hf_generate(bart_dir: Path, converted: Path, limit: int) -> None:
    model, tok, _ = load_model(converted)
    hf = hf_model(bart_dir)
    src_ours, src_hf = batch(tok, TEXTS, bos=False), batch(tok, TEXTS, bos=True)
    ours = decode_ar(model, src_ours, beam=1, max_len_a=0.0, max_len_b=limit).tokens
    with torch.no_grad():
        seq = hf.generate(
            input_ids=src_hf,
            attention_mask=src_hf != tok.pad_id,
            generation_config=generation_config(tok, num_beams=1, max_new_tokens=limit + 1),
        )
    theirs = hf_outputs(seq, tok, limit)
    assert ours == theirs
    if limit == 30:
        assert any(len(o) < limit for o in ours), "no sentence ended with EOS: the test lost its point"


def test_beam_equals_hf_generate(bart_dir: Path, converted: Path) -> None:
    """Beam 4 with early stopping and length penalty 1, as fairseq (and our search) do it."""
    model, tok, _ = load_model(converted)
    hf = hf_model(bart_dir)
    src_ours, src_hf = batch(tok, TEXTS, bos=False), batch(tok, TEXTS, bos=True)
    limit = 30
    ours = decode_ar(model, src_ours, beam=4, max_len_a=0.0, max_len_b=limit, length_penalty=1.0).tokens
    with torch.no_grad():
        seq = hf.generate(
            input_ids=src_hf,
            attention_mask=src_hf != tok.pad_id,
            generation_config=generation_config(
                tok, num_beams=4, early_stopping=True, length_penalty=1.0, max_new_tokens=limit + 1
            ),
        )
    assert ours == hf_outputs(seq, tok, limit)


# ------------------------------------------------------------------- weights that are not BART's (issue 38)


@pytest.fixture
def tiny_bart_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bart"
    folder.mkdir()
    build_tokenizer(folder)
    build_bart(folder, HFTokenizer.from_file(folder / "tokenizer.json").vocab_size)
    return folder


def _convert_cli(folder: Path, out: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from janusgen.cli import main

    code = main(["convert", "--hf", str(folder), "--out", str(out)])
    return code, capsys.readouterr().err


def test_convert_refuses_unrelated_weights_naming_them(tiny_bart_dir: Path, tmp_path: Path, capsys) -> None:
    """Item 6: a BART config with unrelated weights converted with every weight missing (exit 0): a
    randomly initialised "BART"."""
    from safetensors.torch import save_file

    save_file({"foo.weight": torch.zeros(3)}, str(tiny_bart_dir / "model.safetensors"))
    code, err = _convert_cli(tiny_bart_dir, tmp_path / "out", capsys)
    assert code == 2 and "Traceback" not in err
    assert re.search(r"\d+ missing \(lm_head\.weight, model\.decoder\.", err), err
    assert "1 unexpected (foo.weight)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_convert_refuses_some_missing_weights(tiny_bart_dir: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tiny_bart_dir / "model.safetensors"))
    del weights["model.decoder.layers.1.fc2.weight"]
    save_file(weights, str(tiny_bart_dir / "model.safetensors"), metadata={"format": "pt"})
    code, err = _convert_cli(tiny_bart_dir, tmp_path / "out", capsys)
    assert code == 2 and "missing" in err and "model.decoder.layers.1.fc2.weight" in err
    assert not (tmp_path / "out").exists()


class _Planted:
    """Unpickling this runs code: it would create the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_convert_never_unpickles_a_pytorch_model_bin(tiny_bart_dir: Path, tmp_path: Path, capsys) -> None:
    """Item 13: a pickle `pytorch_model.bin` was refused without running, but with a traceback."""
    import pickle

    marker = tmp_path / "ran"
    (tiny_bart_dir / "model.safetensors").unlink()
    (tiny_bart_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Planted(marker)))
    code, err = _convert_cli(tiny_bart_dir, tmp_path / "out", capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "pytorch_model.bin" in err and "safetensors" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_convert_refuses_a_corrupt_safetensors_file(tiny_bart_dir: Path, tmp_path: Path, capsys) -> None:
    """Item 13: a corrupt model.safetensors gave a SafetensorError traceback."""
    (tiny_bart_dir / "model.safetensors").write_bytes(b"\xff" * 64)
    code, err = _convert_cli(tiny_bart_dir, tmp_path / "out", capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "model.safetensors" in err and "not a readable safetensors file" in err
