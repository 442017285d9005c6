"""A decoder start token before BOS (ModelConfig.decoder_start_id, forced_bos: how a converted BART
decodes): every search, Mask-Predict and the training views read </s> BOS s_1 .., and a BOS the model
chooses itself (not forced) is dropped from the output. tests/model/test_bart.py checks the same against
Hugging Face; these use tiny random models."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

import janusgen.objectives as objectives_module
from janusgen.config import DecodeConfig
from janusgen.decoding.api import decode
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.presets import model_preset, objective_preset
from tests.decoding.conftest import VOCAB, make_sources

BOS, EOS, MASK = 2, 3, 4
# the module, not the function of the same name that janusgen.decoding exports
mask_predict_module = importlib.import_module("janusgen.decoding.mask_predict")


def _model(bos_bias: float, forced: bool, seed: int = 0) -> JanusTransformer:
    """A tiny random model that starts with EOS (as BART's </s>), BOS forced or not; `bos_bias` is added
    to BOS's logit (a trained BART picks BOS first by itself), and EOS grows likelier along the output."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(
        model_preset("tiny"), vocab_size=VOCAB, decoder_start_id=EOS, forced_bos=forced, logits_bias=True
    )
    model = JanusTransformer(cfg).eval()
    with torch.no_grad():
        model.final_logits_bias[BOS] = bos_bias
        eos = model.embed.weight[EOS]
        positions = torch.arange(model.dec_positions.weight.shape[0], dtype=torch.float)[:, None]
        model.dec_positions.weight += 0.3 * positions * eos / eos.norm()
        model.relative_bias.weight.normal_()
    return model


def test_the_start_settings_are_checked_and_off_by_default():
    cfg = model_preset("tiny")
    assert (cfg.decoder_start_id, cfg.forced_bos) == (None, False)
    with pytest.raises(Exception, match="decoder_start_id=2: must not be BOS"):
        dataclasses.replace(cfg, decoder_start_id=cfg.bos_id)
    with pytest.raises(Exception, match="forced_bos=True: needs a decoder_start_id"):
        dataclasses.replace(cfg, forced_bos=True)
    # one more position for the start token, as for a source BOS
    assert _model(0.0, True).dec_positions.weight.shape[0] == cfg.max_positions + 1


@pytest.mark.parametrize("beam", [1, 4])
def test_a_bos_the_model_chooses_first_is_dropped_and_then_decoding_goes_on_as_forced(beam):
    """With BOS very likely first, the model without forced BOS chooses it (BOS is allowed at the first
    step only) and goes on exactly as the model that forces it; its outputs never hold BOS."""
    src = make_sources([3, 8, 5, 11, 6], seed=1)
    free = decode(_model(40.0, forced=False), src, DecodeConfig(beam=beam))
    forced = decode(_model(40.0, forced=True), src, DecodeConfig(beam=beam))
    assert free.tokens == forced.tokens
    assert all(BOS not in tokens for tokens in free.tokens)
    assert len({len(t) for t in free.tokens}) >= 2
    # unlikely, BOS is never chosen, and the first output follows </s> directly
    unlikely = decode(_model(-40.0, forced=False), src, DecodeConfig(beam=beam))
    assert all(BOS not in tokens for tokens in unlikely.tokens) and unlikely.tokens != free.tokens


@pytest.mark.parametrize("forced, bos_bias", [(True, 0.0), (False, 40.0), (False, -40.0)])
@pytest.mark.parametrize("drafting", ["keep", "fused"])
def test_speculative_decoding_reads_the_start_tokens_as_greedy(forced, bos_bias, drafting):
    model = _model(bos_bias, forced, seed=2)
    src = make_sources([3, 8, 5, 11, 6, 1, 14], seed=2)
    greedy = decode(model, src, DecodeConfig(beam=1))
    spec = decode(model, src, DecodeConfig(mode="speculative"), drafting=drafting)
    assert spec.tokens == greedy.tokens
    assert spec.scores == pytest.approx(greedy.scores, abs=1e-4)


def test_mask_predict_and_the_training_views_read_the_start_token_before_bos(monkeypatch):
    model = _model(0.0, forced=True)
    seen = []
    view = mask_predict_module.nar_view
    monkeypatch.setattr(
        mask_predict_module, "nar_view", lambda tgt, pad: seen.append(tgt.clone()) or view(tgt, pad)
    )
    decoded = decode(
        model, make_sources([4, 7], seed=0), DecodeConfig(mode="nar", iterations=2, length_beam=2)
    )
    first = seen[0]
    assert (first[:, :2] == torch.tensor([EOS, BOS])).all() and (first[:, 2] == MASK).all()
    assert all(len(t) >= 1 and BOS not in t for t in decoded.tokens)

    # training: the masked view holds </s> BOS s_1 .. EOS and never masks the first two
    masked_seen = []
    masked_view = objectives_module.masked_view
    monkeypatch.setattr(
        objectives_module,
        "masked_view",
        lambda tgt, masked, *a, **kw: masked_seen.append((tgt, masked)) or masked_view(tgt, masked, *a, **kw),
    )
    src = make_sources([5, 9], seed=3)
    tgt = torch.tensor([[BOS, 7, 8, 9, 10, 11, EOS, 0], [BOS, *range(12, 18), EOS]])
    model.train()
    out = JanusObjective(objective_preset("janus"), seed=0)(model, src, tgt)
    assert torch.isfinite(out.loss)
    dec_tgt, masked = masked_seen[0]
    assert torch.equal(dec_tgt[:, 1:], tgt) and (dec_tgt[:, 0] == EOS).all()
    assert not masked[:, :2].any() and masked.any()
