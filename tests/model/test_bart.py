"""BART-JANUS conversion: a tiny random BartForConditionalGeneration, built and saved here (no network),
converted with `janus convert`, must give the same logits, the same training loss and the same greedy /
beam outputs as HF's unmodified `generate`, with HF's own start tokens (</s> first, <s> forced or not)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from janusgen.checkpoint import load_model, save_checkpoint  # noqa: E402
from janusgen.config import DecodeConfig  # noqa: E402
from janusgen.data.hf_tokenizer import HFTokenizer  # noqa: E402
from janusgen.decoding.api import decode  # noqa: E402
from janusgen.model.bart import convert, new_parameters, weight_names  # noqa: E402
from janusgen.model.layout import ar_view, decoder_sequence  # noqa: E402
from janusgen.model.transformer import JanusTransformer  # noqa: E402
from janusgen.objectives import JanusObjective  # noqa: E402
from janusgen.presets import objective_preset  # noqa: E402

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


# How the tiny BART starts decoding: "hf" as BartConfig's defaults (decoder_start_token_id </s>, nothing
# forced: bart-base, bart-large-xsum), "forced" as bart-large and bart-large-cnn (</s>, then <s> forced),
# "bos" with <s> as the start token (what janusgen's own models do)
STARTS = ("hf", "forced", "bos")


def build_bart(folder: Path, vocab_size: int, tied: bool = True, start: str = "hf") -> None:
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
        **({"decoder_start_token_id": 0} if start == "bos" else {}),
    )
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(cfg)
    with torch.no_grad():  # move every weight off its init (layer norms at 1/0, zero biases)
        for p in model.parameters():
            p.add_(0.15 * torch.randn_like(p))
        model.final_logits_bias.normal_(0.0, 1.0)
        # some outputs end before the limit, some do not (values found by trying)
        eos_bias = {("bos", True): 3.5, ("bos", False): 2.0}.get((start, tied), 2.5 if tied else 1.5)
        model.final_logits_bias[0, cfg.eos_token_id] = eos_bias
        model.model.decoder.embed_positions.weight.normal_(0.0, 1.0)  # outputs that change along the sentence
        # <pad>, <unk>, <mask> and (where not forced) <s>, which our search never outputs and HF's may,
        # are never likely: the two searches can be compared as they are
        never = [cfg.pad_token_id, 3, vocab_size - 1] + ([] if start == "forced" else [cfg.bos_token_id])
        model.final_logits_bias[0, never] = -30.0
        if not tied:  # only the output projection is untied (BART's encoder and decoder share `shared`)
            model.model.encoder.embed_tokens.weight.copy_(model.model.shared.weight)
            model.model.decoder.embed_tokens.weight.copy_(model.model.shared.weight)
    if start == "forced":
        model.generation_config.forced_bos_token_id = cfg.bos_token_id
    model.save_pretrained(str(folder))


@pytest.fixture(
    scope="module",
    params=[(True, "hf"), (False, "forced"), (True, "forced"), (False, "bos")],
    ids=["tied-hf", "untied-forced", "tied-forced", "untied-bos"],
)
def bart_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tied, start = request.param
    folder = tmp_path_factory.mktemp("tiny-bart")
    build_tokenizer(folder)
    build_bart(folder, HFTokenizer.from_file(folder / "tokenizer.json").vocab_size, tied=tied, start=start)
    return folder


@pytest.fixture(scope="module")
def converted(bart_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "bart-janus"
    save_checkpoint(out, *convert(str(bart_dir)))
    return out


def hf_model(bart_dir: Path):
    return transformers.BartForConditionalGeneration.from_pretrained(str(bart_dir)).float().eval()


def batch(tok: HFTokenizer, texts: list[str], bos: bool) -> torch.Tensor:
    """Right-padded ids + EOS, with BOS in front if `bos`."""
    rows = [([tok.bos_id] if bos else []) + ids + [tok.eos_id] for ids in tok.encode(texts)]
    width = max(map(len, rows))
    return torch.tensor([r + [tok.pad_id] * (width - len(r)) for r in rows])


def start_of(bart_dir: Path) -> str:
    """Which of STARTS the tiny BART in `bart_dir` uses, read back from HF's own files."""
    gen = transformers.GenerationConfig.from_pretrained(str(bart_dir))
    if gen.decoder_start_token_id == 0:
        return "bos"
    return "forced" if gen.forced_bos_token_id == 0 else "hf"


def test_every_weight_is_mapped_or_new(bart_dir: Path, converted: Path) -> None:
    model, tok, config = load_model(converted)
    assert isinstance(tok, HFTokenizer) and (converted / "tokenizer.json").is_file()
    assert new_parameters(model) == {"source_length_embed.weight", "length_head.weight", "length_head.bias"}
    assert set(model.state_dict()) == set(weight_names(model.cfg)) | new_parameters(model)
    assert config["converted_from"]["class"] == "BartForConditionalGeneration"
    cfg = model.cfg
    assert (cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.unk_id, cfg.mask_id) == (1, 0, 2, 3, tok.vocab_size - 1)
    # the start tokens are the checkpoint's: </s> first (BOS forced after it where HF forces it)
    expected = {"hf": (2, False), "forced": (2, True), "bos": (None, False)}[start_of(bart_dir)]
    assert (cfg.decoder_start_id, cfg.forced_bos) == expected


def test_teacher_forced_logits_equal_hf(bart_dir: Path, converted: Path) -> None:
    """The AR view (content stream, as converted) reproduces HF's logits on what the decoder reads (the
    start token, then the target); so do the content rows of the JANUS query-stream AR view, whose
    content rows see exactly what BART's decoder rows see."""
    model, tok, _ = load_model(converted)
    hf = hf_model(bart_dir)
    src, tgt = TEXTS[:3], TEXTS[1:4]
    src_ours, src_hf = batch(tok, src, bos=False), batch(tok, src, bos=True)
    seq = decoder_sequence(batch(tok, tgt, bos=True), model.cfg.decoder_start_id)  # (</s>) <s> .. </s>
    with torch.no_grad():
        expected = hf(
            input_ids=src_hf,
            attention_mask=src_hf != tok.pad_id,
            decoder_input_ids=seq[:, :-1],
            decoder_attention_mask=seq[:, :-1] != tok.pad_id,
        ).logits
        enc = model.encode(src_ours)
        got = model.ar_logits(seq, enc)
        view = ar_view(seq, tok.pad_id, tok.mask_id)
        content_rows = model.logits(model.decode(view, enc)[:, : view.num_content])
    valid = seq[:, 1:] != tok.pad_id
    diff = (got - expected)[valid].abs().max().item()
    print(f"max |logit difference| ours vs HF BART: {diff:.2e}")
    assert diff < 1e-5
    assert (content_rows - expected)[valid].abs().max().item() < 1e-5


def test_training_feeds_the_decoder_what_hf_fine_tuning_feeds_it(bart_dir: Path, converted: Path) -> None:
    """The AR loss of JANUS training (no label smoothing) is HF's own loss with labels = the target: HF
    shifts the labels right after its decoder_start_token_id (</s> <s> s_1 .. s_n), and so does our
    objective, BOS included among the predicted tokens."""
    if start_of(bart_dir) == "bos":
        pytest.skip("a start token of <s> would make HF read <s> <s> ..: janusgen starts with the target")
    model, tok, _ = load_model(converted)
    hf = hf_model(bart_dir)
    src, tgt = TEXTS[:3], TEXTS[1:4]
    src_ours, src_hf = batch(tok, src, bos=False), batch(tok, src, bos=True)
    tgt_ids = batch(tok, tgt, bos=True)
    with torch.no_grad():
        expected = hf(
            input_ids=src_hf,
            attention_mask=src_hf != tok.pad_id,
            labels=tgt_ids.masked_fill(tgt_ids == 1, -100),
        ).loss
        objective = JanusObjective(dataclasses.replace(objective_preset("ar"), label_smoothing=0.0))
        got = objective(model, src_ours, tgt_ids).terms["ar"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


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


def hf_generate(hf, src: torch.Tensor, tok: HFTokenizer, limit: int, **search) -> list[list[int]]:
    """HF's `generate` with the checkpoint's own generation config (its start token, forced BOS and
    forced EOS untouched; only the search's size and stopping given), as token lists: the generated ids
    after the start token and a leading <s>, up to, without, the first EOS. Ours stops at `limit`
    tokens with a forced EOS; HF's limit counts the <s> it generates and the EOS."""
    extra = int(hf.generation_config.forced_bos_token_id is not None)
    with torch.no_grad():
        seq = hf.generate(
            input_ids=src,
            attention_mask=src != tok.pad_id,
            do_sample=False,
            max_new_tokens=limit + 1 + extra,
            **search,
        )
    out = []
    for row in seq[:, 1:].tolist():
        row = row[1:] if row and row[0] == tok.bos_id else row
        out.append((row[: row.index(tok.eos_id)] if tok.eos_id in row else row)[:limit])
    return out


@pytest.mark.parametrize("limit", [6, 30])
def test_greedy_equals_hf_generate(bart_dir: Path, converted: Path, limit: int) -> None:
    model, tok, _ = load_model(converted)
    src_ours, src_hf = batch(tok, TEXTS, bos=False), batch(tok, TEXTS, bos=True)
    ours = decode(model, src_ours, DecodeConfig(beam=1, max_len_a=0.0, max_len_b=limit)).tokens
    assert ours == hf_generate(hf_model(bart_dir), src_hf, tok, limit, num_beams=1)
    if limit == 30:
        assert any(len(o) < limit for o in ours), "no sentence ended with EOS: the test lost its point"
        assert any(len(o) > 2 for o in ours), "every output is short: the test lost its point"
    # self-speculative decoding reads the same start tokens: its outputs are greedy's
    assert (
        decode(model, src_ours, DecodeConfig(mode="speculative", max_len_a=0.0, max_len_b=limit)).tokens
        == ours
    )


def test_beam_equals_hf_generate(bart_dir: Path, converted: Path) -> None:
    """Beam 4 with early stopping and length penalty 1, as fairseq (and our search) do it; a forced BOS
    counts in the length normalisation, as in HF's and fairseq's searches."""
    model, tok, _ = load_model(converted)
    src_ours, src_hf = batch(tok, TEXTS, bos=False), batch(tok, TEXTS, bos=True)
    limit = 30
    ours = decode(
        model, src_ours, DecodeConfig(beam=4, max_len_a=0.0, max_len_b=limit, length_penalty=1.0)
    ).tokens
    theirs = hf_generate(
        hf_model(bart_dir), src_hf, tok, limit, num_beams=4, early_stopping=True, length_penalty=1.0
    )
    assert ours == theirs


# ------------------------------------------------------------------- weights that are not BART's


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
    """a BART config with unrelated weights converted with every weight missing (exit 0): a
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
    """a pickle `pytorch_model.bin` was refused without running, but with a traceback."""
    import pickle

    marker = tmp_path / "ran"
    (tiny_bart_dir / "model.safetensors").unlink()
    (tiny_bart_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Planted(marker)))
    code, err = _convert_cli(tiny_bart_dir, tmp_path / "out", capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "pytorch_model.bin" in err and "safetensors" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_convert_refuses_a_corrupt_safetensors_file(tiny_bart_dir: Path, tmp_path: Path, capsys) -> None:
    """a corrupt model.safetensors gave a SafetensorError traceback."""
    (tiny_bart_dir / "model.safetensors").write_bytes(b"\xff" * 64)
    code, err = _convert_cli(tiny_bart_dir, tmp_path / "out", capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "model.safetensors" in err and "not a readable safetensors file" in err
