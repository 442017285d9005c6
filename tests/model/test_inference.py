"""A model made ready for decoding (model/inference.py): fused projections compute what the separate
ones do, int8 weights stay close to float32 and decode in every mode, and training never uses them."""

from __future__ import annotations

import pytest
import torch

from janusgen.decoding import decode_ar, decode_nar, decode_speculative
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.model.inference import prepare_for_inference
from janusgen.objectives import JanusObjective
from janusgen.presets import objective_preset
from tests.model.test_transformer_options import build, make_batch, tiny_config


def _logits(model) -> dict[str, torch.Tensor]:
    src, tgt, _ = make_batch(model.cfg)
    with torch.no_grad():
        enc = model.encode(src)
        return {"encoder": enc.states, "ar": model.ar_logits(tgt, enc)}


@pytest.mark.parametrize("ar_stream", ["query", "content"])
def test_fused_projections_compute_the_same(ar_stream):
    model = build(tiny_config(ar_stream=ar_stream))
    src, _, _ = make_batch(model.cfg)
    before, tokens = _logits(model), decode_ar(model, src, beam=3).tokens
    prepare_for_inference(model)
    assert all(layer.self_attn.inference for layer in model.decoder_layers)
    after = _logits(model)
    for name in before:
        torch.testing.assert_close(after[name], before[name], atol=1e-5, rtol=1e-5)
    assert decode_ar(model, src, beam=3).tokens == tokens


def test_int8_weights_stay_close_and_decode_in_every_mode():
    model = build(tiny_config())
    src, _, _ = make_batch(model.cfg)
    reference = _logits(model)
    prepare_for_inference(model, "int8")
    int8 = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(model.decoder_layers[0].ffn.fc1, int8)
    assert isinstance(model.inference["output"], int8)
    assert isinstance(model.decoder_layers[0].self_attn.inference["qkv"], int8)
    quantized = _logits(model)
    for name in reference:  # int8 rounding: close, not equal
        error = (quantized[name] - reference[name]).abs().max() / reference[name].abs().max()
        assert 0 < error < 0.1, (name, error)
    for decoded in (
        decode_ar(model, src, beam=1),
        decode_ar(model, src, beam=3),
        decode_nar(model, src, 4, rerank=True),
        decode_speculative(model, src),
    ):
        assert len(decoded.tokens) == src.shape[0]
    assert decode_speculative(model, src).tokens == decode_ar(model, src, beam=1).tokens


def test_training_ignores_the_decoding_modules():
    model = build(tiny_config())
    prepare_for_inference(model)
    model.train()
    src, tgt, _ = make_batch(model.cfg)
    JanusObjective(objective_preset("janus"), seed=0)(model, src, tgt).loss.backward()
    q = model.decoder_layers[0].self_attn.q_proj.weight
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert not any("inference" in name for name, _ in model.named_parameters())
    assert set(model.state_dict()) == set(build(tiny_config()).state_dict())


def test_translator_quantize_option(toy_checkpoint):
    texts = ["casa perro", "sol luna mar"]
    int8 = Translator.load(toy_checkpoint, device="cpu", quantize="int8")
    assert len(int8.generate(texts, mode="ar", beam=2)) == 2
    with pytest.raises(JanusError, match="--quantize int8 quantizes float32 weights"):
        Translator.load(toy_checkpoint, device="cpu", dtype="bfloat16", quantize="int8")
    with pytest.raises(JanusError, match="--quantize"):
        Translator.load(toy_checkpoint, device="cpu", quantize="int4")
