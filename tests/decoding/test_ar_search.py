"""Greedy and beam search: agreement with each other and with teacher forcing, batching, length limits."""

import dataclasses

import pytest
import torch

from janusgen.config import DecodeConfig
from janusgen.decoding import beam_search, decode, greedy_search, teacher_forced_log_probs
from janusgen.decoding.common import max_output_lengths, with_bos_eos
from janusgen.model.layout import DecoderView
from janusgen.model.transformer import DecoderCache, JanusTransformer
from janusgen.presets import model_preset

MIXED = [int(n) for n in torch.randint(0, 20, (32,), generator=torch.Generator().manual_seed(1))]


def _search(model, src, beam, a=1.2, b=10, length_penalty=1.0):
    with torch.inference_mode():
        enc = model.encode(src)
        max_len = max_output_lengths(model, src, a, b)
        if beam is None:
            return greedy_search(model, enc, max_len, length_penalty)
        return beam_search(model, enc, max_len, beam, length_penalty)


def test_outputs_end_at_varied_lengths(random_model, sources):
    """Guard for the tests below: with eos_ramp the outputs exercise both EOS and the length limit."""
    model, src = random_model(eos_ramp=0.3), sources(MIXED)
    limits = max_output_lengths(model, src, 1.2, 10)
    for beam in (None, 5):
        hyps = _search(model, src, beam)
        assert (hyps.lengths < limits).sum() >= 10 and (hyps.lengths == limits).sum() >= 3
        assert len(set(hyps.lengths.tolist())) >= 5


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_of_one_equals_greedy(random_model, sources, length_penalty):
    model, src = random_model(eos_ramp=0.3), sources(MIXED)
    greedy = _search(model, src, None, length_penalty=length_penalty)
    beam = _search(model, src, 1, length_penalty=length_penalty)
    assert torch.equal(greedy.lengths, beam.lengths)
    assert greedy.token_lists() == beam.token_lists()
    torch.testing.assert_close(greedy.log_prob, beam.log_prob)
    torch.testing.assert_close(greedy.score, beam.score)


@pytest.mark.parametrize("beam", [None, 4])
def test_incremental_log_probs_equal_teacher_forcing(random_model, sources, beam):
    model, src = random_model(eos_ramp=0.3), sources(MIXED)
    hyps = _search(model, src, beam, length_penalty=0.7)
    with torch.inference_mode():
        tgt = with_bos_eos(model, hyps.tokens, hyps.lengths)
        forced = teacher_forced_log_probs(model, model.encode(src), tgt)
    torch.testing.assert_close(forced.sum(dim=1), hyps.log_prob, atol=1e-4, rtol=0)
    torch.testing.assert_close(hyps.score, hyps.log_prob / (hyps.lengths + 1).float() ** 0.7)


@pytest.mark.parametrize("where", ["next", "same"])
@pytest.mark.parametrize(
    "changes", [{}, {"relative_positions": 0, "pre_norm": False}, {"ar_stream": "content"}]
)
def test_incremental_logits_equal_teacher_forced_logits(sources, where, changes):
    """ar_query_position acts alike in training (`ar_view`) and in incremental decoding (`ar_step_view`
    with a cache): the logits of each step are the teacher-forced ones, for both positions."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(model_preset("tiny"), vocab_size=50, ar_query_position=where, **changes)
    model = JanusTransformer(cfg).eval()
    if model.relative_bias is not None:
        torch.nn.init.normal_(model.relative_bias.weight)  # a trained bias, not the initial slopes
    src = sources([4, 9, 6])
    g = torch.Generator().manual_seed(0)
    tgt = torch.tensor(
        [[2, *torch.randint(5, 50, (n,), generator=g).tolist(), 3] + [0] * (9 - n) for n in (9, 3, 6)]
    )
    with torch.inference_mode():
        enc = model.encode(src)
        forced = model.ar_logits(tgt, enc)  # (B, T - 1, V)
        cache, positions = DecoderCache(), torch.arange(tgt.shape[1])
        for t in range(tgt.shape[1] - 1):
            view = model.ar_step_view(tgt[:, t], positions[t : t + 2])
            step = model.logits(model.ar_rows(view, model.decode(view, enc, cache))[:, 0])
            valid = tgt[:, t + 1] != 0  # rows whose prefix is all real tokens
            torch.testing.assert_close(step[valid], forced[valid, t], atol=1e-5, rtol=0)


def test_teacher_forcing_equals_one_prefix_at_a_time(random_model, sources):
    """The parallel AR scoring against a slow reference that runs the AR view on every prefix."""
    model, src = random_model(), sources([4, 9])
    g = torch.Generator().manual_seed(0)
    tgt = torch.tensor(
        [
            [2, *torch.randint(5, 50, (6,), generator=g).tolist(), 3, 0, 0],
            [2, *torch.randint(5, 50, (8,), generator=g).tolist(), 3],
        ]
    )
    with torch.inference_mode():
        enc = model.encode(src)
        forced = teacher_forced_log_probs(model, enc, tgt)
        for b, length in enumerate([8, 10]):
            for p in range(1, length):
                prefix = tgt[b : b + 1, : p + 1]
                # content rows 0..p-1 (causal) and one query row at p that sees them all
                visible = torch.ones(p + 1, p, dtype=torch.bool).tril()[None]  # (1, p + 1, p)
                view = DecoderView(
                    torch.cat([prefix[:, :-1], torch.full((1, 1), 4)], dim=1),
                    torch.arange(p + 1)[None],
                    visible,
                    p,
                )
                hidden = model.decode(view, enc.index_select(torch.tensor([b])))
                logp = model.logits(hidden[0, -1]).log_softmax(-1)
                assert abs(float(logp[tgt[b, p]]) - float(forced[b, p - 1])) < 1e-5
            assert (forced[b, length - 1 :] == 0).all()


@pytest.mark.parametrize("beam", [None, 1, 5])
def test_a_sentence_decodes_the_same_alone_and_in_a_batch(random_model, sources, beam):
    model, src = random_model(eos_ramp=0.3), sources(MIXED)
    batch = _search(model, src, beam)
    for i in range(len(MIXED)):
        alone = _search(model, src[i : i + 1, : MIXED[i] + 1], beam)
        assert alone.token_lists()[0] == batch.token_lists()[i]
        assert abs(float(alone.score[0]) - float(batch.score[i])) < 1e-5


@pytest.mark.parametrize("beam", [None, 5])
def test_length_limit(random_model, sources, beam):
    model, src = random_model(), sources([0, 3, 10, 25])
    # a random model without eos_ramp never chooses EOS: every output runs to its limit
    hyps = _search(model, src, beam, a=0.5, b=2)
    assert hyps.lengths.tolist() == [2, 4, 7, 15]  # ⌊0.5·(n + 1) + 2⌋
    assert _search(model, src, beam, a=0, b=0).lengths.tolist() == [0, 0, 0, 0]
    # capped so that BOS + output + EOS fit in max_positions (64 for the tiny preset)
    assert _search(model, src, beam, a=10, b=100).lengths.tolist() == [62] * 4


def test_beam_search_scores_at_least_as_well_as_greedy_on_average(random_model, sources):
    for seed in range(3):
        model, src = random_model(seed=seed, eos_ramp=0.3), sources(MIXED, seed=seed)
        greedy, beam = _search(model, src, None), _search(model, src, 5)
        assert beam.score.mean() > greedy.score.mean()
        assert (beam.score >= greedy.score - 1e-5).float().mean() >= 0.8


def test_finished_sentences_leave_the_batch_and_search_stops_early(overfit, monkeypatch):
    """The overfit model ends its outputs after 3 to 8 tokens although 14 to 20 are allowed."""
    rows = []
    model_decode = overfit.model.decode

    def spy(view, enc, cache=None):
        rows.append(view.tokens.shape[0])
        return model_decode(view, enc, cache)

    monkeypatch.setattr(overfit.model, "decode", spy)
    for beam in (1, 5):
        rows.clear()
        assert decode(overfit.model, overfit.src, DecodeConfig(beam=beam)).tokens == overfit.references
        assert len(rows) <= max(map(len, overfit.references)) + 4
        assert rows[0] == 6 * beam and rows[-1] < rows[0] and rows == sorted(rows, reverse=True)


def test_deterministic(random_model, sources):
    model, src = random_model(eos_ramp=0.3), sources(MIXED)
    for beam in (1, 5):
        first, second = (
            decode(model, src, DecodeConfig(beam=beam)),
            decode(model, src, DecodeConfig(beam=beam)),
        )
        assert first == second
