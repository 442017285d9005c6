import dataclasses

import pytest
import torch
import torch.nn.functional as F

from janusgen.data import masking
from janusgen.data.masking import inner_lengths, release_mask, span_mask, uniform_mask
from janusgen.losses import label_smoothed_ce, symmetric_kl
from janusgen.model.layout import masked_view, nar_view
from janusgen.model.transformer import JanusTransformer
from janusgen.objective_config import ObjectiveConfig
from janusgen.objectives import JanusObjective
from janusgen.presets import model_preset, objective_preset

PAD, BOS, EOS = 0, 2, 3


def _pairs(lengths, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths) + 2
    src = torch.full((len(lengths), t - 1), PAD)
    tgt = torch.full((len(lengths), t), PAD)
    for b, n in enumerate(lengths):
        src[b, : n + 1] = torch.cat([torch.randint(5, vocab, (n,), generator=g), torch.tensor([EOS])])
        tgt[b, : n + 2] = torch.cat(
            [torch.tensor([BOS]), torch.randint(5, vocab, (n,), generator=g), torch.tensor([EOS])]
        )
    return src, tgt


def _plain_kl(a, b):
    lp, lq = a.float().log_softmax(-1), b.float().log_softmax(-1)
    return 0.5 * ((lp.exp() - lq.exp()) * (lp - lq)).sum(-1)


def _plain_ce(logits, target, eps):
    lp = logits.float().log_softmax(-1)
    return (1 - eps) * -lp.gather(-1, target[..., None])[..., 0] + eps * -lp.mean(-1)


def test_symmetric_kl_is_symmetric_and_zero_on_equal_inputs():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(3, 4, 11, generator=g), torch.randn(3, 4, 11, generator=g)
    valid = torch.ones(3, 4, dtype=torch.bool)
    assert torch.allclose(symmetric_kl(p, q, valid), symmetric_kl(q, p, valid))
    assert symmetric_kl(p, p, valid).abs() < 1e-6
    assert symmetric_kl(p, q, valid) > 0
    # equals ½ (KL(p||q) + KL(q||p)) written out plainly
    lp, lq = p.log_softmax(-1), q.log_softmax(-1)
    direct = 0.5 * ((lp.exp() * (lp - lq)).sum(-1) + (lq.exp() * (lq - lp)).sum(-1)).mean()
    assert torch.allclose(symmetric_kl(p, q, valid), direct, atol=1e-6)
    # only valid positions count
    some = valid.clone()
    some[0] = False
    assert torch.allclose(symmetric_kl(p, q, some), symmetric_kl(p[1:], q[1:], valid[1:]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_fused_losses_match_the_plain_expressions_in_value_and_gradient(monkeypatch, dtype):
    import janusgen.losses as losses

    monkeypatch.setattr(losses, "_CPU_CHUNK_ELEMENTS", 3 * 37)  # several chunks, the last one short
    g = torch.Generator().manual_seed(1)
    a = (3 * torch.randn(5, 7, 37, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)
    b = (3 * torch.randn(5, 7, 37, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)
    target = torch.randint(0, 37, (5, 7), generator=g)
    valid = torch.rand(5, 7, generator=g) > 0.3
    weights = torch.randn(5, 7, generator=g, dtype=torch.float64)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype != torch.bfloat16 else dict(atol=2e-3, rtol=2e-2)
    a_before, b_before = a.detach().clone(), b.detach().clone()

    def both(fused, plain):
        got = fused()
        expected = plain()
        assert torch.allclose(got.double(), expected.double(), **tol)
        grads_fused = torch.autograd.grad(got, (a, b), allow_unused=True)
        grads_plain = torch.autograd.grad(expected, (a, b), allow_unused=True)
        for x, y in zip(grads_fused, grads_plain, strict=True):
            if y is None:
                assert x is None or not x.any()
            else:
                assert x.dtype == dtype and torch.allclose(x.double(), y.double(), **tol)

    w = weights * valid  # a weighted sum exercises a non-uniform upstream gradient
    both(lambda: symmetric_kl(a, b, valid) * 3, lambda: (_plain_kl(a, b) * valid).sum() / valid.sum() * 3)
    both(
        lambda: (losses._SymmetricKL.apply(a.reshape(-1, 37), b.reshape(-1, 37)).view(5, 7) * w).sum(),
        lambda: (_plain_kl(a, b) * w).sum(),
    )
    both(
        lambda: label_smoothed_ce(a, target, valid, 0.1),
        lambda: (_plain_ce(a, target, 0.1) * valid).sum() / valid.sum(),
    )
    both(
        lambda: (
            losses._SmoothedCrossEntropy.apply(a.reshape(-1, 37), target.reshape(-1), 0.2).view(5, 7) * w
        ).sum(),
        lambda: (_plain_ce(a, target, 0.2) * w).sum(),
    )
    assert torch.equal(a, a_before) and torch.equal(b, b_before)  # inputs never changed in place


def test_label_smoothed_ce_matches_definition_and_ignores_invalid():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g)
    target = torch.randint(0, 7, (2, 3), generator=g)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    eps = 0.1
    lp = logits.log_softmax(-1)
    per = (1 - eps) * -lp.gather(-1, target[..., None])[..., 0] + eps * -lp.mean(-1)
    assert torch.allclose(label_smoothed_ce(logits, target, valid, eps), per[valid].mean())
    assert torch.allclose(
        label_smoothed_ce(logits, target, valid, 0.0),
        torch.nn.functional.cross_entropy(logits[valid], target[valid]),
    )


def test_span_mask_ratio_and_never_special():
    src, tgt = _pairs([1, 2, 5, 10, 30, 0], 50, 0)
    g = torch.Generator().manual_seed(0)
    n = inner_lengths(tgt, PAD)
    for _ in range(50):
        m = span_mask(tgt, PAD, ratio=0.7, span_lambda=2.0, generator=g)
        assert not m[:, 0].any()
        assert not (m & (tgt == PAD)).any() and not (m & (tgt == EOS)).any()
        expected = torch.where(n > 0, (0.7 * n.float()).round().long().clamp(min=1), 0)
        assert torch.equal(m.sum(1), expected)


def _mean_run_length(mask: torch.Tensor) -> float:
    """Masked tokens per maximal run of consecutive masked positions, over the whole batch."""
    starts = mask & ~torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], dim=1)
    return float(mask.sum() / starts.sum())


def test_span_mask_masks_runs_whose_length_follows_lambda():
    """At a low ratio (10 of 40 tokens, 30 observed tokens to put spans between), Poisson(λ) spans give
    runs of about λ tokens; the same number of positions drawn uniformly gives runs of ~1.3, whatever λ.
    Either a uniform placement or a λ that is not used fails this test."""
    _, tgt = _pairs([40] * 64, 50, 0)
    n = inner_lengths(tgt, PAD)
    g = torch.Generator().manual_seed(0)
    runs = {
        lam: _mean_run_length(torch.cat([span_mask(tgt, PAD, 0.25, lam, g) for _ in range(10)]))
        for lam in (1.0, 3.0, 8.0)
    }
    k = torch.full_like(n, 10)
    uniform = torch.cat([masking.row_ranks(masking._inner_scores(tgt, n, g)) < k[:, None] for _ in range(10)])
    assert int(uniform[0].sum()) == 10 and _mean_run_length(uniform) < 1.6
    assert runs[3.0] > 2.3  # E max(Poisson(3), 1) = 3.05, the last span of a sentence cut at k
    assert runs[8.0] > runs[3.0] + 1.5 and runs[1.0] < runs[3.0] - 0.8


def test_uniform_mask_counts_cover_one_to_n():
    _, tgt = _pairs([6], 50, 0)
    g = torch.Generator().manual_seed(0)
    counts = {int(uniform_mask(tgt, PAD, generator=g).sum()) for _ in range(300)}
    assert counts == set(range(1, 7))


def test_masks_are_reproducible_from_the_generator():
    _, tgt = _pairs([5, 9, 14], 50, 1)
    a = span_mask(tgt, PAD, generator=torch.Generator().manual_seed(3))
    b = span_mask(tgt, PAD, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_each_view_is_computed_only_when_a_term_needs_it():
    assert JanusObjective(objective_preset("ar")).needs_nar is False
    cmlm = JanusObjective(objective_preset("cmlm"))
    assert not cmlm.needs_ar and cmlm.needs_nar and not cmlm.needs_aux
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    src, tgt = _pairs([3, 5], 30, 0)
    assert set(JanusObjective(objective_preset("ar"))(model, src, tgt).terms) == {"ar"}
    assert set(cmlm(model, src, tgt).terms) == {"nar", "length"}
    assert set(JanusObjective(objective_preset("janus"))(model, src, tgt).terms) == {
        "ar",
        "nar",
        "aux",
        "length",
        "kl_ar_nar",
        "kl_nar_aux",
        "kl_ar_aux",
    }


def test_loss_is_the_weighted_sum_of_its_terms():
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    src, tgt = _pairs([3, 5, 8], 30, 0)
    cfg = objective_preset("janus")
    out = JanusObjective(cfg)(model, src, tgt)
    t = out.terms
    expected = (
        t["ar"]
        + 0.5 * (t["nar"] + t["aux"])
        + 0.1 * t["length"]
        + t["kl_ar_nar"]
        + t["kl_nar_aux"]
        + 3 * t["kl_ar_aux"]
    )
    assert torch.allclose(out.loss.detach(), expected)


def test_each_term_is_its_distribution_at_the_right_tokens():
    """Every term against a reference built another way: P_AR of s_p from a pass over the prefix
    s_0 .. s_{p-1} alone, P_NAR from the decoder's content-only view (decoding's), P_AUX from the query
    row of each masked token in left-to-right order. Pins the alignment the KL terms rely on (the AR
    row for position m - 1 predicts s_m), the targets of each cross-entropy and the length targets."""
    torch.manual_seed(0)
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30)).eval()
    torch.nn.init.normal_(model.relative_bias.weight)  # positions matter: an off-by-one cannot cancel
    src, tgt = _pairs([3, 5, 8], 30, 0)
    cfg = objective_preset("janus")
    objective = JanusObjective(cfg)
    objective.reseed(11)
    with torch.no_grad():
        out = objective(model, src, tgt)
        objective.reseed(11)
        masked = objective.sample_mask(tgt, PAD)  # the mask the call above drew
        enc = model.encode(src)
        mask_id = model.cfg.mask_id
        nar_hidden = model.decode(nar_view(tgt.masked_fill(masked, mask_id), PAD), enc)
        view = masked_view(tgt, masked, PAD, mask_id)
        aux_hidden = model.decode(view, enc)[:, view.num_content :]
        ar_all, ar_m, nar_m, aux_m, targets_all, targets_m = [], [], [], [], [], []
        for b in range(tgt.shape[0]):
            one = enc.index_select(torch.tensor([b]))
            n = int(inner_lengths(tgt[b : b + 1], PAD))
            positions = [int(p) for p in masked[b].nonzero()]
            for p in range(1, n + 2):  # s_1 .. s_n, EOS
                logits = model.ar_logits(tgt[b : b + 1, : p + 1], one)[0, -1]  # sees s_0 .. s_{p-1}
                ar_all.append(logits)
                targets_all.append(tgt[b, p])
                if p in positions:
                    ar_m.append(logits)
                    nar_m.append(model.logits(nar_hidden[b, p]))
                    aux_m.append(model.logits(aux_hidden[b, positions.index(p)]))
                    targets_m.append(tgt[b, p])
        ar_all, ar_m, nar_m, aux_m = (torch.stack(x) for x in (ar_all, ar_m, nar_m, aux_m))
        targets_all, targets_m = torch.stack(targets_all), torch.stack(targets_m)
        lengths = inner_lengths(tgt, PAD)
    eps = cfg.label_smoothing
    expected = {
        "ar": _plain_ce(ar_all, targets_all, eps).mean(),
        "nar": _plain_ce(nar_m, targets_m, eps).mean(),
        "aux": _plain_ce(aux_m, targets_m, eps).mean(),
        "length": F.cross_entropy(model.length_logits(enc).detach(), lengths),
        "kl_ar_nar": _plain_kl(ar_m, nar_m).mean(),
        "kl_nar_aux": _plain_kl(nar_m, aux_m).mean(),
        "kl_ar_aux": _plain_kl(ar_m, aux_m).mean(),
    }
    assert set(out.terms) == set(expected) == set(objective.term_names)
    for name, value in expected.items():
        assert torch.allclose(out.terms[name], value, atol=1e-5), name
    weights = {"ar": 1.0, "nar": 0.5, "aux": 0.5, "length": 0.1, "kl_ar_nar": 1.0, "kl_nar_aux": 1.0}
    total = sum(weights.get(name, 3.0) * value for name, value in expected.items())
    assert torch.allclose(out.loss, total, atol=1e-5)


def test_objective_tells_its_terms_and_what_it_does_not_train():
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    assert JanusObjective(objective_preset("janus")).term_names == JanusObjective.TERMS
    assert JanusObjective(objective_preset("cmlm")).term_names == ("nar", "length")
    ar = JanusObjective(objective_preset("ar"))
    assert ar.term_names == ("ar",) and ar.name == "ar"
    assert ar.untrained_modules(model) == [model.length_head, model.source_length_embed]
    assert JanusObjective(objective_preset("cmlm")).untrained_modules(model) == []
    ar.freeze_untrained(model)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith(("length_head", "source_length_embed")) for name in frozen)


@pytest.mark.parametrize(
    "name,streams", [("ar", ["ar"]), ("cmlm", ["nar", "length"]), ("janus", ["ar", "nar", "aux", "length"])]
)
def test_each_objective_overfits_a_handful_of_pairs(name, streams):
    torch.manual_seed(0)
    vocab = 24
    cfg = dataclasses.replace(model_preset("tiny"), vocab_size=vocab, d_model=64, ffn_dim=128)
    model = JanusTransformer(cfg)
    src, tgt = _pairs([3, 4, 5, 6], vocab, 0)
    objective = JanusObjective(dataclasses.replace(objective_preset(name), label_smoothing=0.0), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        out = objective(model, src, tgt)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = [objective(model, src, tgt) for _ in range(5)]  # several fresh masks
    for stream in streams:
        worst = max(o.terms[stream].item() for o in final)
        assert worst < 0.05, f"{name}: {stream} loss {worst:.3f} did not reach ~0"


def test_unknown_objective_is_a_clear_error():
    from janusgen.errors import JanusError

    with pytest.raises(JanusError, match="unknown objective"):
        objective_preset("bert")
    with pytest.raises(TypeError):
        ObjectiveConfig(wrong=1)


def test_kl_warmup_ramps_the_kl_weights():
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    src, tgt = _pairs([3, 5, 8], 30, 0)
    objective = JanusObjective(dataclasses.replace(objective_preset("janus"), kl_warmup_updates=4))
    kl = ("kl_ar_nar", "kl_nar_aux", "kl_ar_aux")
    for update, scale in [(1, 0.25), (2, 0.5), (4, 1.0), (10, 1.0)]:
        objective.set_update(update)
        objective.reseed(0)
        out = objective(model, src, tgt)
        t = out.terms
        expected = (
            t["ar"]
            + 0.5 * (t["nar"] + t["aux"])
            + 0.1 * t["length"]
            + scale * (t[kl[0]] + t[kl[1]] + 3 * t[kl[2]])
        )
        assert torch.allclose(out.loss.detach(), expected)


def test_ar_only_curriculum_trains_the_ar_term_first_then_ramps_the_kls():
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    src, tgt = _pairs([3, 5, 8], 30, 0)
    cfg = dataclasses.replace(objective_preset("janus"), ar_only_updates=3, kl_warmup_updates=2)
    objective = JanusObjective(cfg)
    for update in (1, 3):
        objective.set_update(update)
        out = objective(model, src, tgt)
        assert set(out.terms) == {"ar", "length"}
        assert torch.allclose(out.loss.detach(), out.terms["ar"] + 0.1 * out.terms["length"])
        with objective.full_loss():  # validation sees the whole loss in every phase
            assert {"nar", "aux", "kl_ar_aux"} <= set(objective(model, src, tgt).terms)
    for update, scale in [(4, 0.5), (5, 1.0)]:
        objective.set_update(update)
        objective.reseed(0)
        out = objective(model, src, tgt)
        t = out.terms
        kl = t["kl_ar_nar"] + t["kl_nar_aux"] + 3 * t["kl_ar_aux"]
        expected = t["ar"] + 0.5 * (t["nar"] + t["aux"]) + 0.1 * t["length"] + scale * kl
        assert torch.allclose(out.loss.detach(), expected)


def test_curriculum_as_fractions_of_the_run_follows_progress_not_updates():
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    src, tgt = _pairs([3, 5, 8], 30, 0)
    cfg = dataclasses.replace(objective_preset("janus"), ar_only_fraction=0.4, kl_warmup_fraction=0.2)
    objective = JanusObjective(cfg)
    for update, progress in [(1, 0.0), (500, 0.39)]:  # the update count does not matter, progress does
        objective.set_update(update, progress)
        assert set(objective(model, src, tgt).terms) == {"ar", "length"}
    for progress, scale in [(0.4, 0.0), (0.5, 0.5), (0.6, 1.0), (1.0, 1.0)]:
        objective.set_update(2, progress)
        objective.reseed(0)
        out = objective(model, src, tgt)
        t = out.terms
        kl = t["kl_ar_nar"] + t["kl_nar_aux"] + 3 * t["kl_ar_aux"]
        expected = t["ar"] + 0.5 * (t["nar"] + t["aux"]) + 0.1 * t["length"] + scale * kl
        assert torch.allclose(out.loss.detach(), expected)


def test_ar_only_curriculum_needs_an_ar_term():
    from janusgen.errors import JanusError

    with pytest.raises(JanusError, match="ar_only_updates"):
        dataclasses.replace(objective_preset("cmlm"), ar_only_updates=10)


def test_length_loss_trains_the_length_classifier_but_not_the_encoder():
    """Its gradient through the pooled source states held the AR view back (BENCHMARKS.md)."""
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    src, tgt = _pairs([3, 5, 8], 30, 0)
    JanusObjective.length_loss(model, model.encode(src), tgt).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["length_head.weight"].abs().sum() > 0
    assert grads["source_length_embed.weight"].abs().sum() > 0
    assert all(g is None for name, g in grads.items() if name.startswith(("encoder", "embed", "enc_")))


def test_a_second_encoder_pass_differs_only_by_its_dropout():
    """encode_per_view encodes the source again for the NAR/AUX streams: without dropout that is the same
    loss and gradient at twice the encoder cost, so the option only matters for models with dropout."""
    src, tgt = _pairs([3, 5, 8], 30, 0)

    def loss_and_grads(model_cfg, encode_per_view):
        torch.manual_seed(0)
        model = JanusTransformer(model_cfg)
        calls = []
        encode = model.encode
        model.encode = lambda *args: calls.append(1) or encode(*args)
        cfg = dataclasses.replace(objective_preset("janus"), encode_per_view=encode_per_view)
        torch.manual_seed(1)  # the same dropout noise for the first encoder pass
        out = JanusObjective(cfg, seed=0)(model, src, tgt)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return out.loss.detach(), grads, len(calls)

    plain = dataclasses.replace(model_preset("tiny"), vocab_size=30, dropout=0.0, attention_dropout=0.0)
    loss1, grads1, calls1 = loss_and_grads(plain, False)
    loss2, grads2, calls2 = loss_and_grads(plain, True)
    assert (calls1, calls2) == (1, 2)
    assert torch.allclose(loss1, loss2, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads1, grads2, strict=True))

    noisy = dataclasses.replace(plain, dropout=0.3)
    assert not torch.allclose(loss_and_grads(noisy, False)[0], loss_and_grads(noisy, True)[0])


def test_release_masking_masks_a_varying_number_and_never_the_ends():
    """The authors' release aims at ceil(0.7 (n + 2)) positions with overlapping spans over the whole
    sequence and then unmasks BOS/EOS: a varying number of the inner tokens end up masked (about 0.56:
    tests/data/test_masking.py pins the share and the span structure), and a 3-token sentence is
    sometimes not masked at all."""
    g = torch.Generator().manual_seed(0)
    for n in (8, 15, 25, 40):
        tgt = torch.full((400, n + 2), 7)
        mask = release_mask(tgt, PAD, 0.7, 2.0, g)
        assert not mask[:, 0].any() and not mask[:, -1].any()
        share = mask[:, 1:-1].float().mean(dim=1)
        assert float(share.std()) > 0.03, "the number masked must vary, unlike our fixed ratio"
    short = release_mask(torch.full((400, 5), 7), PAD, 0.7, 2.0, g)
    assert (short.sum(dim=1) == 0).any(), "a 3-token sentence is sometimes left unmasked"
    # padding is never masked; rows of different lengths in one batch
    tgt = torch.tensor([[BOS, 5, 6, 7, EOS, PAD, PAD], [BOS, 5, 6, 7, 8, 9, EOS]])
    for _ in range(50):
        mask = release_mask(tgt, PAD, 0.7, 2.0, g)
        assert not mask[0, 4:].any() and not mask[:, 0].any() and not mask[1, 6]
    # our span masking, for contrast: exactly round(0.7 n)
    ours = span_mask(torch.full((50, 27), 7), PAD, 0.7, 2.0, g)
    assert (ours.sum(dim=1) == round(0.7 * 25)).all()


def test_the_objective_masks_the_targets_unk_with_release_masking(monkeypatch):
    """The release masks every <unk> of the target (its mask token is <unk>): the objective passes the
    model's unk_id to release masking, and to no other."""
    import janusgen.objectives as objectives

    seen = []
    view = objectives.masked_view
    monkeypatch.setattr(
        objectives,
        "masked_view",
        lambda tgt, masked, *a, **kw: seen.append(masked) or view(tgt, masked, *a, **kw),
    )
    cfg = dataclasses.replace(model_preset("tiny"), vocab_size=30)
    model = JanusTransformer(cfg)
    src, tgt = _pairs([6, 9, 4], 30, 0)
    tgt[:, 1] = cfg.unk_id
    for name, always in (("release", True), ("span", False)):
        objective = JanusObjective(dataclasses.replace(objective_preset("janus"), masking=name), seed=0)
        for _ in range(20):
            objective(model, src, tgt)
        hits = torch.stack([m[:, 1] for m in seen[-20:]])
        assert bool(hits.all()) == always, name


def test_suffix_masking_leaves_a_prefix_to_continue():
    """suffix_mask masks s_{c+1} .. s_n after a cut c ~ U{0..n-1}: the placeholders of a speculative
    draft, a given prefix followed by masks up to EOS; `with_suffixes` mixes it into another masking for
    a share of the sentences."""
    g = torch.Generator().manual_seed(0)
    tgt = torch.tensor([[BOS, 5, 6, 7, 8, EOS, PAD], [BOS, 5, EOS, PAD, PAD, PAD, PAD]]).repeat(300, 1)
    mask = masking.suffix_mask(tgt, PAD, g)
    n = inner_lengths(tgt, PAD)
    counts = mask.sum(dim=1)
    assert ((counts >= 1) & (counts <= n)).all()
    # contiguous and reaching the last inner token: the masked positions are exactly n-k+1 .. n
    pos = torch.arange(tgt.shape[1])[None]
    assert torch.equal(mask, (pos > (n - counts)[:, None]) & (pos <= n[:, None]))
    assert set(counts[0::2].tolist()) == {1, 2, 3, 4}, "every cut of a 4-token sentence occurs"
    # mixed in for a share of the sentences, the rest keep their own mask
    spans = span_mask(tgt, PAD, 0.7, 2.0, g)
    assert masking.with_suffixes(spans, tgt, PAD, 0.0, g) is spans
    mixed = masking.with_suffixes(spans, tgt, PAD, 0.5, g)
    suffixed = (mixed != spans).any(dim=1).float().mean()
    assert 0.2 < float(suffixed) < 0.6  # rows drawn a suffix equal to their span mask do not count
    objective = JanusObjective(ObjectiveConfig(suffix_fraction=1.0), seed=0)
    sampled = objective.sample_mask(tgt, PAD)
    counts = sampled.sum(dim=1)
    assert torch.equal(sampled, (pos > (n - counts)[:, None]) & (pos <= n[:, None]))
    with pytest.raises(Exception, match="suffix_fraction"):
        ObjectiveConfig(suffix_fraction=1.5)


def _ar_leaf(model, monkeypatch):
    """Wrap model.ar_logits so that its output passes through a zero leaf: the leaf's gradient is the
    gradient that reaches the AR view's logits."""
    leaf = {}
    original = model.ar_logits

    def wrapped(tgt, enc):
        logits = original(tgt, enc)
        leaf["z"] = torch.zeros_like(logits, requires_grad=True)
        return logits + leaf["z"]

    monkeypatch.setattr(model, "ar_logits", wrapped)
    return leaf


@pytest.mark.parametrize("detach", ["never", "always"])
def test_kl_ar_detach_decides_whether_the_kl_reaches_the_ar_view(monkeypatch, detach):
    """With the AR side detached, KL*(AR, NAR) trains the NAR view only: no gradient reaches the AR
    logits (the AR term is off here, so the KL is the only way there)."""
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30))
    cfg = ObjectiveConfig(
        ar_weight=0.0,
        nar_weight=1.0,
        aux_weight=0.0,
        length_weight=0.0,
        kl_ar_nar=1.0,
        kl_nar_aux=0.0,
        kl_ar_aux=0.0,
        kl_ar_detach=detach,
    )
    objective = JanusObjective(cfg, seed=0)
    leaf = _ar_leaf(model, monkeypatch)
    src, tgt = _pairs([6, 9, 4], 30, seed=1)
    out = objective(model, src, tgt)
    out.loss.backward()
    reached = leaf["z"].grad is not None and leaf["z"].grad.abs().sum() > 0
    assert reached == (detach == "never")
    # the NAR side learns either way
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_until_close_opens_each_ar_kl_when_its_teacher_comes_within_the_margin():
    cfg = ObjectiveConfig(kl_ar_detach="until_close", kl_teacher_margin=0.5)
    objective = JanusObjective(cfg, seed=0)
    assert "ar_masked" in objective.term_names
    assert objective.ar_fixed == {"kl_ar_nar": True, "kl_ar_aux": True}
    assert objective.observe_validation({"ar_masked": 3.0, "nar": 4.0, "aux": 3.6}) == []
    assert objective.observe_validation({"ar_masked": 3.0, "nar": 3.9, "aux": 3.4}) == ["kl_ar_aux"]
    assert objective.ar_fixed == {"kl_ar_nar": True, "kl_ar_aux": False}
    # once open, it stays open; the state survives a resume
    assert objective.observe_validation({"ar_masked": 3.0, "nar": 3.2, "aux": 9.0}) == ["kl_ar_nar"]
    resumed = JanusObjective(cfg, seed=0)
    resumed.load_state_dict(objective.state_dict())
    assert resumed.ar_fixed == {"kl_ar_nar": False, "kl_ar_aux": False}
    # the paper's setting never watches and never detaches
    paper = JanusObjective(ObjectiveConfig(), seed=0)
    assert "ar_masked" not in paper.term_names and not any(paper.ar_fixed.values())
    assert paper.observe_validation({"ar_masked": 3.0, "nar": 3.0, "aux": 3.0}) == []


def test_the_ar_masked_diagnostic_is_logged_but_not_trained():
    """ar_masked is the AR view's cross-entropy at the masked tokens (its logits at rows m_j - 1): a
    term in the log, not in the loss."""
    torch.manual_seed(0)
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30)).eval()
    src, tgt = _pairs([7, 5], 30, seed=2)
    watching = JanusObjective(ObjectiveConfig(kl_ar_detach="until_close"), seed=3)
    out = watching(model, src, tgt)
    weights = {
        "ar": 1.0,
        "nar": 0.5,
        "aux": 0.5,
        "length": 0.1,
        "kl_ar_nar": 1.0,
        "kl_nar_aux": 1.0,
        "kl_ar_aux": 3.0,
    }
    expected = sum(weights[k] * v for k, v in out.terms.items() if k != "ar_masked")
    assert torch.allclose(out.loss.detach(), expected)
    # its value: the plain CE of the AR logits at the masked positions
    watching.reseed(3)
    masked = watching.sample_mask(tgt, PAD)
    view = masked_view(tgt, masked, PAD, model.cfg.mask_id)
    with torch.no_grad():
        ar = model.ar_logits(tgt, model.encode(src))
        at = (view.masked_positions - 1).clamp(min=0)
        picked = ar.gather(1, at[:, :, None].expand(-1, -1, ar.shape[-1]))
        ce = _plain_ce(picked, view.masked_targets, 0.1)[view.masked_valid].mean()
    assert torch.allclose(out.terms["ar_masked"], ce, atol=1e-5)


def test_the_ar_view_learns_ar_tgt_when_given():
    """Distilled data with --ar-targets references: the AR term is the AR loss on `ar_tgt`, the NAR and
    AUX terms those on `tgt`; the KLs with the AR view are refused (no common target)."""
    torch.manual_seed(0)
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=30)).eval()
    src, tgt = _pairs([7, 5], 30, seed=2)
    _, references = _pairs([4, 8], 30, seed=9)
    cfg = dataclasses.replace(objective_preset("janus"), kl_ar_nar=0.0, kl_ar_aux=0.0)
    mixed = JanusObjective(cfg, seed=3)(model, src, tgt, references)
    on_refs = JanusObjective(cfg, seed=3)(model, src, references)
    on_tgt = JanusObjective(cfg, seed=3)(model, src, tgt)
    assert torch.allclose(mixed.terms["ar"], on_refs.terms["ar"])
    assert not torch.allclose(mixed.terms["ar"], on_tgt.terms["ar"])
    for name in ("nar", "aux", "kl_nar_aux"):
        assert torch.allclose(mixed.terms[name], on_tgt.terms[name])
    with pytest.raises(ValueError, match="same targets"):
        JanusObjective(objective_preset("janus"), seed=3)(model, src, tgt, references)
