"""Every architecture option of ModelConfig builds the model it names and runs every view: post-norm
(`pre_norm=False`), sinusoidal positions (`learned_positions=False`), no relative-position bias
(`relative_positions=0`), GELU, BERT initialisation (`init="bert"`), and the `paper-iwslt` preset that
combines the first, third and fifth. Tiny models, random weights: shapes, finiteness, decoding, and that
each option changes what it claims to change."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from janusgen.config import DecodeConfig
from janusgen.decoding import decode
from janusgen.errors import JanusError
from janusgen.model.config import ModelConfig
from janusgen.model.layout import masked_view
from janusgen.model.transformer import JanusTransformer, SinusoidalPositions
from janusgen.objectives import JanusObjective
from janusgen.presets import MODEL_PRESETS, model_preset, objective_preset

VOCAB = 30
BERT_STD = 0.02


def tiny_config(base: str = "tiny", **changes: object) -> ModelConfig:
    """A tiny model of preset `base`: tiny's sizes, VOCAB pieces, and `changes`."""
    sizes = {f: getattr(model_preset("tiny"), f) for f in ("d_model", "ffn_dim", "heads", "encoder_layers")}
    sizes |= {"decoder_layers": 2, "max_positions": 64, "max_target_length": 62}
    return dataclasses.replace(model_preset(base), vocab_size=VOCAB, **sizes, **changes)


def build(cfg: ModelConfig, seed: int = 0) -> JanusTransformer:
    torch.manual_seed(seed)
    return JanusTransformer(cfg).eval()


def tiny(**changes: object) -> JanusTransformer:
    return build(tiny_config(**changes))


def make_batch(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """src (2, 7) and tgt (2, 7) = BOS .. EOS, right-padded; `masked` (2, 7): a few target positions."""
    g = torch.Generator().manual_seed(0)
    src = torch.randint(5, VOCAB, (2, 7), generator=g)
    src[0, 6], src[1, 4], src[1, 5:] = cfg.eos_id, cfg.eos_id, cfg.pad_id
    tgt = torch.randint(5, VOCAB, (2, 7), generator=g)
    tgt[:, 0], tgt[0, 6], tgt[1, 5], tgt[1, 6] = cfg.bos_id, cfg.eos_id, cfg.eos_id, cfg.pad_id
    masked = torch.zeros_like(tgt, dtype=torch.bool)
    masked[0, [2, 3, 5]] = True
    masked[1, 1] = True
    return src, tgt, masked


@torch.no_grad()
def views(model: JanusTransformer) -> dict[str, torch.Tensor]:
    """The outputs of every view of `model` on make_batch: encoder states, length logits, teacher-forced
    AR logits, and the NAR (placeholder rows) and AUX (query rows) logits of a masked view."""
    cfg = model.cfg
    src, tgt, masked = make_batch(cfg)
    enc = model.encode(src)
    view = masked_view(tgt, masked, cfg.pad_id, cfg.mask_id)
    hidden = model.decode(view, enc)  # (B, R, d)
    assert hidden.shape == (2, view.tokens.shape[1], cfg.d_model)
    index = view.placeholder_rows[:, :, None].expand(-1, -1, cfg.d_model)
    return {
        "encoder": enc.states,
        "length": model.length_logits(enc),
        "ar": model.ar_logits(tgt, enc),
        "nar": model.logits(hidden.gather(1, index)),
        "aux": model.logits(hidden[:, view.num_content :]),
    }


def check_runs(model: JanusTransformer) -> dict[str, torch.Tensor]:
    """Every view has its shape and finite values, and AR (greedy, beam) and NAR decoding give outputs
    of ordinary tokens within the length limit. Returns the views."""
    cfg = model.cfg
    out = views(model)
    k = int(make_batch(cfg)[2].sum(1).max())
    shapes = {
        "encoder": (2, 7 + int(cfg.source_bos), cfg.d_model),
        "length": (2, cfg.max_target_length + 1),
        "ar": (2, 6, VOCAB),
        "nar": (2, k, VOCAB),
        "aux": (2, k, VOCAB),
    }
    for name, shape in shapes.items():
        assert out[name].shape == shape, name
        assert torch.isfinite(out[name]).all(), name
    src = make_batch(cfg)[0]
    special = {cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.mask_id}
    for decoded in (
        decode(model, src, DecodeConfig(beam=1, max_len_a=0, max_len_b=6)),
        decode(model, src, DecodeConfig(beam=3, max_len_a=0, max_len_b=6)),
        decode(model, src, DecodeConfig(mode="nar", iterations=2, length_beam=2, max_len_a=0, max_len_b=6)),
    ):
        assert len(decoded.tokens) == 2
        for tokens in decoded.tokens:
            assert 1 <= len(tokens) <= 6 and all(0 <= t < VOCAB and t not in special for t in tokens)
    return out


def differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names=("ar", "nar", "aux")) -> bool:
    return all(not torch.allclose(a[n], b[n], atol=1e-4) for n in names)


def rows_are_normalised(x: torch.Tensor, valid: torch.Tensor) -> bool:
    """Every valid row has mean 0 and variance 1: the output of a LayerNorm at its initial weights."""
    rows = x[valid]
    mean, var = rows.mean(-1), rows.var(-1, unbiased=False)
    return bool(
        torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
        and torch.allclose(var, torch.ones_like(var), atol=1e-2)
    )


# ----------------------------------------------------------------------------------------- pre_norm


def test_post_norm_has_no_final_norms_and_normalises_after_each_residual():
    post, pre = tiny(pre_norm=False), tiny(pre_norm=True)
    assert isinstance(post.encoder_norm, nn.Identity) and isinstance(post.decoder_norm, nn.Identity)
    assert isinstance(pre.encoder_norm, nn.LayerNorm) and isinstance(pre.decoder_norm, nn.LayerNorm)
    assert all(not layer.pre_norm for layer in [*post.encoder_layers, *post.decoder_layers])
    out = check_runs(post)

    # the same weights (post-norm has all of pre-norm's but the two final LayerNorms): other outputs
    loaded = post.load_state_dict(pre.state_dict(), strict=False)
    assert loaded.missing_keys == []
    assert sorted(loaded.unexpected_keys) == [
        "decoder_norm.bias",
        "decoder_norm.weight",
        "encoder_norm.bias",
        "encoder_norm.weight",
    ]
    assert differ(views(post), views(pre), names=("encoder", "ar", "nar", "aux"))

    # post-norm ends every layer with its LayerNorm, so encoder states are normalised rows even without
    # a final norm; pre-norm's layers end on a residual sum (normalised only by its final norm)
    src = make_batch(post.cfg)[0]
    valid = src != post.cfg.pad_id
    assert rows_are_normalised(out["encoder"], valid)
    pre.encoder_norm = nn.Identity()
    with torch.no_grad():
        assert not rows_are_normalised(pre.encode(src).states, valid)


# -------------------------------------------------------------------------------- learned_positions


def test_sinusoidal_positions_have_no_parameters_and_still_order_the_tokens():
    model = tiny(learned_positions=False)
    assert isinstance(model.enc_positions, SinusoidalPositions) and model.dec_positions is model.enc_positions
    assert not [name for name, _ in model.named_parameters() if "positions" in name]
    assert not [name for name in model.state_dict() if "positions" in name]  # rebuilt, not saved
    learned = tiny()
    assert model.num_parameters() < learned.num_parameters()
    check_runs(model)

    # the same token at every position: only the positions tell the encoder's rows apart
    cfg = model.cfg
    src = torch.tensor([[7, 7, 7, 7, 7, cfg.eos_id]])
    with torch.no_grad():
        states = model.encode(src).states[0, :5]  # (5, d)
        table = model.enc_positions(torch.arange(5))
    assert (torch.cdist(states, states) + torch.eye(5)).min() > 1e-3
    assert table.shape == (5, cfg.d_model) and torch.equal(
        table[0, : cfg.d_model // 2], torch.zeros(cfg.d_model // 2)
    )


# ------------------------------------------------------------------------------- relative_positions


def test_no_relative_bias_leaves_the_visibility_mask_alone_and_decodes():
    model = tiny(relative_positions=0)
    assert model.relative_bias is None
    assert not [name for name, _ in model.named_parameters() if "relative" in name]
    cfg = model.cfg
    _, tgt, masked = make_batch(cfg)
    view = masked_view(tgt, masked, cfg.pad_id, cfg.mask_id)
    mask = model.self_attention_mask(view, view.positions[:, : view.num_content]).dense(torch.float32)
    assert mask.dtype == torch.bool and torch.equal(mask, view.visible[:, None])  # no bias added
    ar_view = model.ar_view(tgt)
    ar_mask = model.self_attention_mask(ar_view, ar_view.positions[:, : ar_view.num_content])
    assert ar_mask.bias is None and ar_mask.causal_blocks == 2
    dense = ar_mask.dense(torch.float32)
    assert dense is None or dense.dtype == torch.bool
    out = check_runs(model)
    biased = tiny(relative_positions=4)
    assert biased.relative_bias is not None
    biased.load_state_dict(model.state_dict(), strict=False)  # the same weights but for the bias
    assert differ(out, views(biased))


# --------------------------------------------------------------------------------------- activation


def test_gelu_differs_from_relu_with_the_same_weights():
    gelu, relu = tiny(activation="gelu"), tiny(activation="relu")
    assert all(layer.ffn.activation is F.gelu for layer in [*gelu.encoder_layers, *gelu.decoder_layers])
    relu.load_state_dict(gelu.state_dict())  # no parameter depends on the activation
    assert differ(check_runs(gelu), views(relu), names=("encoder", "ar", "nar", "aux"))


# --------------------------------------------------------------------------------------------- init


def weights(model: JanusTransformer) -> list[tuple[str, nn.Linear | nn.Embedding]]:
    """The linear and embedding modules that init="bert" initialises: all but the relative-position bias."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear | nn.Embedding) and m is not model.relative_bias
    ]


@pytest.mark.parametrize("changes", [{}, {"tie_output": False, "learned_positions": False}])
def test_bert_init_draws_every_weight_with_std_0_02(changes):
    model = tiny(init="bert", **changes)
    modules = weights(model)
    names = {name for name, _ in modules}
    assert {"embed", "length_head", "source_length_embed", "encoder_layers.0.self_attn.q_proj"} <= names
    assert ("output_projection" in names) == (changes.get("tie_output") is False)
    for name, module in modules:
        w = module.weight.detach()
        if module is model.embed:
            assert torch.equal(w[model.cfg.pad_id], torch.zeros_like(w[0])), "the padding row is zero"
            w = w[torch.arange(VOCAB) != model.cfg.pad_id]
        assert abs(w.std().item() - BERT_STD) < 0.15 * BERT_STD, name
        assert abs(w.mean().item()) < 0.2 * BERT_STD, name
        if isinstance(module, nn.Linear) and module.bias is not None:
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
    # LayerNorms and the relative-position bias keep their start
    default = tiny(**changes)
    assert torch.equal(model.relative_bias.weight, default.relative_bias.weight)
    assert all(
        torch.equal(m.weight, torch.ones_like(m.weight))
        for m in model.modules()
        if isinstance(m, nn.LayerNorm)
    )
    check_runs(model)


def test_default_init_is_not_bert_init():
    model = tiny()
    assert model.cfg.init == "default"
    assert abs(model.embed.weight.std().item() - model.cfg.d_model**-0.5) < 0.02  # N(0, 1/d)
    off = [name for name, m in weights(model) if abs(m.weight.std().item() - BERT_STD) > 0.5 * BERT_STD]
    assert len(off) == len(weights(model))  # no weight looks BERT-initialised
    biases = [m.bias for _, m in weights(model) if isinstance(m, nn.Linear) and m.bias is not None]
    assert biases and all(b.abs().sum() > 0 for b in biases)
    assert not torch.equal(tiny(init="bert").embed.weight, model.embed.weight)


def test_unknown_init_names_the_option():
    with pytest.raises(JanusError, match="--model-option init='xavier'"):
        tiny_config(init="xavier")


# -------------------------------------------------------------------------------------- paper-iwslt


def test_paper_iwslt_preset_is_post_norm_absolute_positions_bert_init():
    cfg = model_preset("paper-iwslt")
    assert (cfg.pre_norm, cfg.learned_positions, cfg.relative_positions) == (False, True, 0)
    # the release's: BOS before the source, a 256-row embed_length, query row i at position i
    assert (cfg.source_bos, cfg.length_predictor, cfg.max_target_length) == (True, "release", 255)
    assert cfg.ar_query_position == "same"
    assert JanusTransformer(cfg).embed_length.weight.shape == (256, 512)
    assert (cfg.init, cfg.attention_dropout, cfg.dropout, cfg.activation) == ("bert", 0.0, 0.3, "relu")
    assert (cfg.d_model, cfg.ffn_dim, cfg.heads, cfg.encoder_layers, cfg.decoder_layers) == (
        512,
        1024,
        4,
        6,
        6,
    )

    model = build(tiny_config("paper-iwslt"))
    assert isinstance(model.encoder_norm, nn.Identity) and model.relative_bias is None
    assert isinstance(model.enc_positions, nn.Embedding)
    assert abs(model.encoder_layers[0].ffn.fc1.weight.std().item() - BERT_STD) < 0.15 * BERT_STD
    check_runs(model)

    # one training step of the JANUS loss, dropout on: finite loss and gradients for every weight
    model.train()
    src, tgt, _ = make_batch(model.cfg)
    objective = JanusObjective(objective_preset("janus"), seed=0)
    objective.set_update(1, 1.0)
    loss = objective(model, src, tgt).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())


def test_every_other_preset_keeps_our_choices():
    """Our CPU benchmarks were measured with these: only `paper-iwslt` takes the release's."""
    for name in MODEL_PRESETS:
        if name != "paper-iwslt":
            cfg = model_preset(name)
            assert (cfg.length_predictor, cfg.ar_query_position, cfg.source_bos) == ("ours", "next", False)


# -------------------------------------------------------------------------------- length_predictor


def test_release_length_predictor_is_a_plain_length_table_over_the_mean_states():
    """logits = mean of the encoder states over the real source tokens @ embed_length^T: no bias, no
    source-length embedding, and the length loss reaches the encoder (ours stops it there)."""
    release, ours = tiny(length_predictor="release"), tiny()
    assert [n for n, _ in release.named_parameters() if "length" in n] == ["embed_length.weight"]
    assert release.embed_length.weight.shape == (63, release.cfg.d_model)  # lengths 0 .. 62
    assert release.length_modules() == [release.embed_length]
    assert ours.length_modules() == [ours.length_head, ours.source_length_embed]
    src = make_batch(release.cfg)[0]
    enc = release.encode(src)
    real = src != release.cfg.pad_id
    pooled = torch.stack([enc.states[b, real[b]].mean(0) for b in range(src.shape[0])])
    torch.testing.assert_close(release.length_logits(enc), pooled @ release.embed_length.weight.T)
    for model, reaches_encoder in ((release, True), (ours, False)):
        model.zero_grad()
        model.length_logits(model.encode(src)).logsumexp(-1).sum().backward()
        grad = model.encoder_layers[0].ffn.fc1.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == reaches_encoder
    with pytest.raises(JanusError, match="--model-option length_predictor='fairseq'"):
        tiny_config(length_predictor="fairseq")


def test_release_length_predictor_trains_and_freezes_with_the_length_loss():
    model = tiny(length_predictor="release")
    check_runs(model)
    ar = JanusObjective(objective_preset("ar"))
    assert ar.untrained_modules(model) == [model.embed_length]
    assert JanusObjective(objective_preset("janus")).untrained_modules(model) == []


# ------------------------------------------------------------------------------- ar_query_position


def test_query_position_moves_only_the_ar_query_rows():
    """`ar_query_position` "same" puts the AR query row that predicts s_{i+1} at position i, "next" at
    i + 1; the content rows and every visibility stay as they are, and the predictions differ."""
    src, tgt, _ = make_batch(tiny_config())
    n = tgt.shape[1] - 1
    out = {}
    for where, first in (("next", 1), ("same", 0)):
        model = tiny(ar_query_position=where)
        view = model.ar_view(tgt)
        assert torch.equal(view.positions[0, n:], torch.arange(first, first + n)), where
        assert torch.equal(view.positions[0, :n], torch.arange(n))
        out[where] = (view, model.ar_logits(tgt, model.encode(src)))
    assert torch.equal(out["same"][0].visible, out["next"][0].visible)
    assert not torch.allclose(out["same"][1], out["next"][1], atol=1e-4)
    with pytest.raises(JanusError, match="--model-option ar_query_position='after'"):
        tiny_config(ar_query_position="after")
