"""Mask-Predict: the inference view, re-masking, the length beam, self-reranking, collapsing repeats,
batching, limits."""

import math

import pytest
import torch

from janusgen.config import DecodeConfig
from janusgen.data.masking import uniform_mask
from janusgen.decoding import decode, linear_schedule, mask_predict, teacher_forced_log_probs
from janusgen.decoding.common import Hypotheses, max_output_lengths, with_bos_eos
from janusgen.decoding.mask_predict import (
    collapse_repeats,
    length_candidates,
    lowest_scores_mask,
    refine,
)
from janusgen.model.layout import masked_view, nar_view

PAD, BOS, EOS, MASK = 0, 2, 3, 4
MIXED = [int(n) for n in torch.randint(0, 20, (32,), generator=torch.Generator().manual_seed(1))]
SPECIAL = [PAD, BOS, EOS, MASK]


def _targets(lengths, seed=0, vocab=50):
    g = torch.Generator().manual_seed(seed)
    tgt = torch.full((len(lengths), max(lengths) + 2), PAD)
    for b, n in enumerate(lengths):
        tgt[b, : n + 2] = torch.tensor([BOS, *torch.randint(5, vocab, (n,), generator=g).tolist(), EOS])
    return tgt


def _encode(model, src, rows=None):
    with torch.inference_mode():
        enc = model.encode(src)
    return enc if rows is None else enc.index_select(torch.tensor(rows))


def test_inference_view_equals_the_placeholder_rows_of_masked_view(random_model, sources):
    model = random_model()
    tgt = _targets([7, 12, 1, 9])
    masked = uniform_mask(tgt, PAD, torch.Generator().manual_seed(0))
    enc = _encode(model, sources([5, 3, 8, 11]))
    with torch.inference_mode():
        training_view = masked_view(tgt, masked, PAD, MASK)
        hidden = model.decode(training_view, enc)
        rows = training_view.placeholder_rows[:, :, None].expand(-1, -1, hidden.shape[-1])
        expected = model.logits(hidden.gather(1, rows))  # (B, K, V) P_NAR at P_1..P_k
        got = model.logits(model.decode(nar_view(tgt.masked_fill(masked, MASK), PAD), enc))  # (B, T, V)
        got = got.gather(1, training_view.masked_positions[:, :, None].expand(-1, -1, got.shape[-1]))
    valid = training_view.masked_valid
    torch.testing.assert_close(got[valid], expected[valid], atol=1e-5, rtol=1e-5)


def test_one_iteration_is_the_argmax_of_p_nar(random_model, sources):
    model = random_model()
    lengths = torch.tensor([6, 1, 13, 9])
    enc = _encode(model, sources([4, 9, 2, 15]))
    hyps = refine(model, enc, lengths, iterations=1)
    everything = _targets(lengths.tolist())
    inner = (everything != PAD) & (everything != BOS) & (everything != EOS)
    with torch.inference_mode():
        view = masked_view(everything, inner, PAD, MASK)
        hidden = model.decode(view, enc)
        rows = view.placeholder_rows[:, :, None].expand(-1, -1, hidden.shape[-1])
        logp = model.logits(hidden.gather(1, rows)).log_softmax(-1)  # (B, K, V), every inner position masked
    best, argmax = logp.index_fill(-1, torch.tensor(SPECIAL), -math.inf).max(dim=-1)
    for b, n in enumerate(lengths.tolist()):
        assert hyps.token_lists()[b] == argmax[b, :n].tolist()
        assert abs(float(hyps.score[b]) - float(best[b, :n].mean())) < 1e-5


def test_linear_schedule_counts():
    n = torch.tensor([10, 7, 3, 0])
    assert [linear_schedule(n, t, 10)[0].item() for t in range(1, 10)] == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    counts = [linear_schedule(n, t, 4).tolist() for t in range(1, 4)]
    assert counts == [[7, 5, 2, 0], [5, 3, 1, 0], [2, 1, 0, 0]]


def test_lowest_scores_mask_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 9, generator=g).round(decimals=1)  # rounding makes ties
    allowed = torch.rand(6, 9, generator=g) > 0.3
    counts = torch.minimum(torch.randint(0, 9, (6,), generator=g), allowed.sum(1))
    got = lowest_scores_mask(scores, allowed, counts)
    for i in range(6):
        ranked = sorted((float(scores[i, j]), j) for j in range(9) if allowed[i, j])  # ties: leftmost first
        expected = {j for _, j in ranked[: int(counts[i])]}
        assert {j for j in range(9) if got[i, j]} == expected


@pytest.mark.parametrize("iterations", [3, 5])
def test_refinement_remasks_the_lowest_probability_tokens(random_model, sources, monkeypatch, iterations):
    """Spy on every decoder pass: iteration t + 1 masks exactly the linear-schedule count of the tokens
    with the lowest kept log-probs, and only those change; a pass with the cached encoder keys/values
    equals one without."""
    model = random_model()
    lengths = torch.tensor([6, 11, 5, 8])
    enc = _encode(model, sources([4, 9, 2, 15]))
    passes = []
    decode = model.decode

    def spy(view, enc, cache=None):
        hidden = decode(view, enc, cache)
        torch.testing.assert_close(hidden, decode(view, enc))  # reusing the encoder keys/values is exact
        passes.append((view.tokens.clone(), model.logits(hidden).log_softmax(-1)))
        return hidden

    monkeypatch.setattr(model, "decode", spy)
    hyps = refine(model, enc, lengths, iterations)
    assert len(passes) == iterations
    kept = previous = None  # (B, L) log-prob of each current token / the tokens after the last pass
    for t, (tokens, logp) in enumerate(passes, start=1):
        masked = tokens == MASK
        if t == 1:
            assert masked.sum(1).tolist() == lengths.tolist()
            kept = torch.zeros(tokens.shape)
        else:
            counts = (lengths * (iterations - t + 1)) // iterations
            assert masked.sum(1).tolist() == counts.tolist()
            for b, n in enumerate(lengths.tolist()):
                ranked = sorted(range(1, n + 1), key=lambda p, b=b: (float(kept[b, p]), p))
                assert set(masked[b].nonzero().view(-1).tolist()) == set(ranked[: int(counts[b])])
            assert torch.equal(tokens[~masked], previous[~masked])  # the others keep their tokens
        best, argmax = logp.index_fill(-1, torch.tensor(SPECIAL), -math.inf).max(-1)
        kept = torch.where(masked, best, kept)
        previous = torch.where(masked, argmax, tokens)
    assert hyps.token_lists() == [previous[b, 1 : n + 1].tolist() for b, n in enumerate(lengths.tolist())]
    torch.testing.assert_close(hyps.log_prob, kept.sum(1))


def _count_decode_calls(model, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at every decoder pass of `model`."""
    calls: list[int] = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda *args: calls.append(1) or decode(*args))
    return calls


def test_the_schedule_is_pluggable_and_empty_passes_are_skipped(random_model, sources, monkeypatch):
    model = random_model()
    lengths = torch.tensor([6, 11])
    enc = _encode(model, sources([4, 9]))
    calls = _count_decode_calls(model, monkeypatch)
    remask_all = refine(model, enc, lengths, 3, schedule=lambda n, t, T: n)
    assert len(calls) == 3
    nothing = refine(model, enc, lengths, 3, schedule=lambda n, t, T: torch.zeros_like(n))
    assert len(calls) == 4  # one pass: iterations 2 and 3 have nothing to re-predict
    assert nothing.token_lists() == refine(model, enc, lengths, 1).token_lists()
    # re-masking everything each time re-predicts from scratch: the same as one iteration
    assert remask_all.token_lists() == nothing.token_lists()


def test_early_stop_ends_refinement_at_the_first_pass_that_changes_nothing(
    random_model, sources, monkeypatch
):
    """Re-masking everything re-predicts every token as it was (the same input as pass 1): with
    early_stop the second pass is the last; without it all the iterations run, to the same result."""
    model = random_model()
    lengths = torch.tensor([6, 11])
    enc = _encode(model, sources([4, 9]))
    calls = _count_decode_calls(model, monkeypatch)
    every = refine(model, enc, lengths, 5, schedule=lambda n, t, T: n)
    assert len(calls) == 5
    stopped = refine(model, enc, lengths, 5, schedule=lambda n, t, T: n, early_stop=True)
    assert len(calls) == 5 + 2
    assert stopped.token_lists() == every.token_lists()
    # a pass that changes tokens does not stop it: the linear schedule on a random model runs on
    refine(model, enc, lengths, 4, early_stop=True)
    assert len(calls) > 5 + 2 + 1


def _limits(model, src):
    return max_output_lengths(model, src, 1.2, 10)


def test_length_candidates(random_model, sources):
    model, src = random_model(), sources([3, 8, 0])
    enc = _encode(model, src)
    with torch.inference_mode():
        logits = model.length_logits(enc)
    top = length_candidates(model, enc, torch.tensor([62, 62, 62]), length_beam=3)
    assert torch.equal(top, logits[:, 1:].topk(3).indices + 1)  # 0 is never a candidate
    best = logits[:, 1:].argmax(1, keepdim=True) + 1
    offsets = length_candidates(model, enc, torch.tensor([62, 62, 62]), 1, offsets=[-1, 0, 2])
    expected = (best + torch.tensor([-1, 0, 2])).clamp(min=1, max=62)
    assert torch.equal(offsets, expected)
    # within [1, max_len], and exactly 0 where max_len is 0
    capped = length_candidates(model, enc, torch.tensor([2, 0, 1]), length_beam=4)
    assert capped[0].max() <= 2 and capped[0].min() >= 1 and set(capped[0].tolist()) == {1, 2}
    assert capped[1].tolist() == [0] * 4 and capped[2].tolist() == [1] * 4


@pytest.mark.parametrize("rerank", [False, True])
def test_length_beam_keeps_the_best_candidate(random_model, sources, rerank):
    """Against a brute-force loop: refine each (sentence, length) candidate alone, score it (mean NAR
    log-prob, or AR log-prob / (n + 1) with the AR view run prefix by prefix), keep the best."""
    model, src = random_model(), sources([4, 9, 2, 15, 7])
    got = decode(model, src, DecodeConfig(mode="nar", iterations=3, length_beam=4, rerank=rerank))
    enc = _encode(model, src)
    lengths = length_candidates(model, enc, _limits(model, src), 4)
    for b in range(src.shape[0]):
        best = None
        for n in lengths[b].tolist():
            alone = refine(model, _encode(model, src, [b]), torch.tensor([n]), 3)
            score = float(alone.score[0])
            if rerank:
                score = _ar_log_prob_by_prefixes(model, src[b : b + 1], alone.token_lists()[0]) / (n + 1)
            if best is None or score > best[0]:
                best = (score, alone.token_lists()[0])
        assert got.tokens[b] == best[1]
        assert abs(got.scores[b] - best[0]) < 1e-4


def _ar_log_prob_by_prefixes(model, src, tokens):
    """Slow reference: the AR log-prob of `tokens` + EOS, one prefix at a time through teacher forcing."""
    full = [BOS, *tokens, EOS]
    enc = _encode(model, src)
    total = 0.0
    for p in range(1, len(full)):
        with torch.inference_mode():
            total += float(teacher_forced_log_probs(model, enc, torch.tensor([full[: p + 1]]))[0, -1])
    return total


def _ar_log_probs(model, src, outputs):
    """(B,) teacher-forced AR log-probs of the token lists `outputs` + EOS, and their (B,) lengths."""
    lengths = torch.tensor([len(t) for t in outputs])
    hyps = torch.full((len(outputs), int(lengths.max())), PAD)
    for b, tokens in enumerate(outputs):
        hyps[b, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    with torch.inference_mode():
        forced = teacher_forced_log_probs(model, model.encode(src), with_bos_eos(model, hyps, lengths))
    return forced.sum(1), lengths


def test_rerank_scores_are_ar_scores(random_model, sources):
    model, src = random_model(), sources([4, 9, 2])
    got = decode(model, src, DecodeConfig(mode="nar", iterations=2, rerank=True, length_penalty=0.5))
    forced, lengths = _ar_log_probs(model, src, got.tokens)
    torch.testing.assert_close(torch.tensor(got.log_probs), forced)
    torch.testing.assert_close(torch.tensor(got.scores), forced / (lengths + 1).float() ** 0.5)


def test_collapse_repeats_keeps_each_run_once():
    rows = [[7, 7, 7, 9, 7, 9, 9], [5, 6, 8], [6, 6, PAD, PAD], [], [8, 8, 8, 8]]
    width = max(map(len, rows))
    tokens = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    lengths = torch.tensor([7, 3, 2, 0, 4])
    log_prob, score = torch.arange(5.0), -torch.arange(5.0)
    got = collapse_repeats(Hypotheses(tokens, lengths, log_prob, score), PAD)
    assert got.token_lists() == [[7, 9, 7, 9], [5, 6, 8], [6], [], [8]]
    assert got.lengths.tolist() == [4, 3, 1, 0, 1]
    assert (got.tokens[0, 4:] == PAD).all() and (got.tokens[4, 1:] == PAD).all()
    assert torch.equal(got.log_prob, log_prob) and torch.equal(got.score, score)  # the refined candidate's


def _runs(tokens):
    return [t for i, t in enumerate(tokens) if i == 0 or tokens[i - 1] != t]


def test_collapsed_outputs_are_the_chosen_candidates_collapsed(random_model, sources):
    """Without reranking the choice is by the refined candidates' NAR scores, so collapsing changes the
    outputs' tokens only; with reranking the AR view scores the collapsed candidates."""
    model, src = random_model(), sources(MIXED)
    plain = decode(model, src, DecodeConfig(mode="nar", iterations=2))
    collapsed = decode(model, src, DecodeConfig(mode="nar", iterations=2, collapse_repeats=True))
    assert any(len(_runs(t)) < len(t) for t in plain.tokens)  # a random model repeats: the test bites
    assert collapsed.tokens == [_runs(t) for t in plain.tokens] and collapsed.scores == plain.scores
    reranked = decode(model, src, DecodeConfig(mode="nar", iterations=2, rerank=True, collapse_repeats=True))
    assert all(t == _runs(t) for t in reranked.tokens)
    forced, _ = _ar_log_probs(model, src, reranked.tokens)
    torch.testing.assert_close(torch.tensor(reranked.log_probs), forced)


@pytest.mark.parametrize("rerank", [False, True])
def test_a_sentence_decodes_the_same_alone_and_in_a_batch(random_model, sources, rerank):
    model, src = random_model(), sources(MIXED)
    batch = decode(model, src, DecodeConfig(mode="nar", iterations=4, rerank=rerank))
    for i in range(len(MIXED)):
        alone = decode(
            model, src[i : i + 1, : MIXED[i] + 1], DecodeConfig(mode="nar", iterations=4, rerank=rerank)
        )
        assert alone.tokens[0] == batch.tokens[i]
        assert abs(alone.scores[0] - batch.scores[i]) < 1e-5


def test_length_limit(random_model, sources):
    model, src = random_model(), sources([0, 3, 10, 25])
    for offsets in (None, (0, 5, 40)):
        out = decode(
            model,
            src,
            DecodeConfig(mode="nar", iterations=2, length_offsets=offsets, max_len_a=0.5, max_len_b=2),
        )
        assert all(1 <= len(t) <= limit for t, limit in zip(out.tokens, [2, 4, 7, 15], strict=True))


def test_deterministic_and_mask_predict_matches_the_api(random_model, sources):
    model, src = random_model(), sources(MIXED)
    first, second = (
        decode(model, src, DecodeConfig(mode="nar", iterations=4)),
        decode(model, src, DecodeConfig(mode="nar", iterations=4)),
    )
    assert first == second
    hyps = mask_predict(model, _encode(model, src), _limits(model, src), iterations=4, length_beam=3)
    assert hyps.token_lists() == first.tokens
