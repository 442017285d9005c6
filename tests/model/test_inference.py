"""A model made ready for decoding (model/inference.py): fused projections compute what the separate
ones do, int8 weights stay close to float32 and decode in every mode, and training never uses them."""

from __future__ import annotations

import pytest
import torch

from janusgen.config import DecodeConfig
from janusgen.decoding import decode
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.model.inference import PackedLinear, prepare_for_inference
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
    before, tokens = _logits(model), decode(model, src, DecodeConfig(beam=3)).tokens
    prepare_for_inference(model)
    assert all(layer.self_attn.inference for layer in model.decoder_layers)
    after = _logits(model)
    for name in before:
        torch.testing.assert_close(after[name], before[name], atol=1e-5, rtol=1e-5)
    assert decode(model, src, DecodeConfig(beam=3)).tokens == tokens


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
        decode(model, src, DecodeConfig(beam=1)),
        decode(model, src, DecodeConfig(beam=3)),
        decode(model, src, DecodeConfig(mode="nar", iterations=4, rerank=True)),
        decode(model, src, DecodeConfig(mode="speculative")),
    ):
        assert len(decoded.tokens) == src.shape[0]
    assert (
        decode(model, src, DecodeConfig(mode="speculative")).tokens
        == decode(model, src, DecodeConfig(beam=1)).tokens
    )


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


needs_onednn = pytest.mark.skipif(
    not PackedLinear.runs_on(torch.zeros(1)), reason="this PyTorch build has no oneDNN linear"
)


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 1, 24), (3, 1, 24), (2, 5, 24), (7, 24)])
@pytest.mark.parametrize("out_features", [16, PackedLinear.ONE_ROW_BLAS // 24 + 1])
def test_packed_linear_computes_what_linear_does(shape, out_features):
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, out_features)
    packed = PackedLinear.replacing(linear)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), linear(x), atol=1e-5, rtol=1e-5)
        linear.weight.mul_(2)  # a changed weight is packed again, never served stale
        torch.testing.assert_close(packed(x), linear(x), atol=1e-5, rtol=1e-5)
    assert packed(x).requires_grad  # with gradients on: a plain Linear, differentiable


@needs_onednn
def test_prepacking_replaces_every_linear_and_keeps_the_state_dict():
    model = build(tiny_config())
    before = model.state_dict()
    prepare_for_inference(model)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, PackedLinear) for m in linears)
    assert isinstance(model.inference["output"], PackedLinear)
    assert model.inference["output"].weight is model.embed.weight  # tied: shared, not copied
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(after[k].data_ptr() == before[k].data_ptr() for k in before)


@needs_onednn
@pytest.mark.slow
def test_packed_linear_compiles():
    """Under torch.compile (inductor) the packed layer is a plain Linear, which inductor can lower."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 16)
    packed = PackedLinear.replacing(linear)
    x = torch.randn(3, 24)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(packed)(x), linear(x), atol=1e-5, rtol=1e-5)
