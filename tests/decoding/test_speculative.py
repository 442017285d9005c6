"""Self-speculative decoding: the contract is that its outputs are AR greedy's, token for token."""

import json
import math
import random

import pytest
import torch

from janusgen.cli import main
from janusgen.config import DecodeConfig
from janusgen.decoding.api import decode
from janusgen.decoding.common import max_output_lengths, with_bos_eos
from janusgen.decoding.search import greedy_search
from janusgen.decoding.speculative import DRAFTINGS, SpeculativeStats, speculative_search
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from tests.conftest import _SRC_WORDS
from tests.decoding.conftest import make_sources


def _varied_sentences(n: int, seed: int) -> list[str]:
    """Toy-task sentences of 1 to 14 words (longer than any training sentence), repeats and all."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_SRC_WORDS) for _ in range(rng.randint(1, 14))) for _ in range(n)]


@pytest.mark.parametrize("drafting", DRAFTINGS)
@pytest.mark.parametrize(
    "seed, eos_ramp, stream, where",
    [
        (0, 0.3, "query", "next"),
        (1, 0.5, "query", "next"),
        (2, 0.3, "content", "next"),
        (3, 0.3, "query", "same"),
    ],
)
def test_random_models_equal_greedy_batched_and_alone(random_model, seed, eos_ramp, stream, where, drafting):
    """Also with the release's AR query rows (`ar_query_position` "same"): the verify pass places them
    as `ar_view` and greedy's `ar_step_view` do."""
    model = random_model(seed=seed, eos_ramp=eos_ramp, ar_stream=stream, ar_query_position=where)
    lengths = [random.Random(seed).randint(1, 20) for _ in range(40)]
    src = make_sources(lengths, seed=seed)
    greedy = decode(model, src, DecodeConfig(beam=1))
    spec = decode(model, src, DecodeConfig(mode="speculative"), drafting=drafting)
    assert spec.tokens == greedy.tokens
    assert spec.scores == pytest.approx(greedy.scores, abs=1e-4)
    assert spec.log_probs == pytest.approx(greedy.log_probs, abs=1e-4)
    for i in range(0, len(lengths), 5):  # alone: no padding, no other sentences advancing differently
        assert (
            decode(model, src[i : i + 1], DecodeConfig(mode="speculative"), drafting=drafting).tokens[0]
            == greedy.tokens[i]
        )


@pytest.mark.parametrize("drafting", DRAFTINGS)
def test_trained_model_equals_greedy_on_300_varied_inputs(toy_checkpoint, drafting):
    """A few hundred varied inputs on a trained model, whose NAR drafts AR partly accepts: at batch 1
    and in batches where sentences advance by different amounts."""
    translator = Translator.load(toy_checkpoint, dtype="float32")
    model, tok = translator.model, translator.tokenizer
    texts = _varied_sentences(300, seed=3)
    ids = [seq + [tok.eos_id] for seq in tok.encode(texts)]
    width = max(map(len, ids))
    src = torch.tensor([seq + [tok.pad_id] * (width - len(seq)) for seq in ids])
    greedy = decode(model, src, DecodeConfig(beam=1))
    stats = SpeculativeStats()
    for start in range(0, len(ids), 50):  # batched, mixed lengths
        decoded = decode(model, src[start : start + 50], DecodeConfig(mode="speculative"), drafting=drafting)
        assert decoded.tokens == greedy.tokens[start : start + 50]
        stats.add(decoded.stats)
    for i in range(0, len(ids), 3):  # batch 1
        one = torch.tensor([ids[i]])
        assert (
            decode(model, one, DecodeConfig(mode="speculative"), drafting=drafting).tokens[0]
            == greedy.tokens[i]
        ), texts[i]
    assert stats.sentences == 300
    assert stats.tokens == sum(len(t) + 1 for t in greedy.tokens)
    assert stats.tokens_per_round > 1.0  # the drafts are accepted in part (a trained model)
    assert stats.rounds_per_sentence < sum(len(t) + 1 for t in greedy.tokens) / 300


@pytest.mark.parametrize("drafting", DRAFTINGS)
def test_length_limits_are_greedy_s(random_model, drafting):
    """A limit below the natural length forces EOS in the verifying pass exactly where greedy does."""
    model = random_model(seed=4)  # no EOS ramp: outputs run to their limits
    src = make_sources([1, 4, 9, 2], seed=4)
    for a, b in ((0.0, 1), (0.5, 2), (1.2, 10)):
        spec = decode(
            model, src, DecodeConfig(mode="speculative", max_len_a=a, max_len_b=b), drafting=drafting
        )
        assert spec.tokens == decode(model, src, DecodeConfig(beam=1, max_len_a=a, max_len_b=b)).tokens
    limits = max_output_lengths(model, src, 0.0, 3)
    hyps, _ = speculative_search(model, model.encode(src), limits, drafting=drafting)
    assert hyps.lengths.tolist() == [3, 3, 3, 3]


TIE_A, TIE_B = 10, 11  # two tokens given the same (or nearly the same) output weights and bias


def _tied_model(random_model, eps: float):
    """A random model whose tokens TIE_A and TIE_B have output rows equal up to a relative `eps` and a
    bias that makes them often the likeliest: an exact tie (eps 0) or a near-tie at each such step."""
    model = random_model(seed=0, eos_ramp=0.3, logits_bias=True)
    with torch.no_grad():
        noise = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1))
        model.embed.weight[TIE_B] = model.embed.weight[TIE_A] * (1 + eps * noise)
        model.final_logits_bias[[TIE_A, TIE_B]] = 1.7
    return model


def _greedy_log_probs(model, src, tokens: list[list[int]]) -> torch.Tensor:
    """(B, T + 1, V) AR log-probs along the given outputs, teacher-forced, with greedy's bans."""
    cfg = model.cfg
    lengths = torch.tensor([len(t) for t in tokens])
    padded = torch.tensor([t + [cfg.pad_id] * (int(lengths.max()) - len(t)) for t in tokens])
    with torch.inference_mode():
        logits = model.ar_logits(with_bos_eos(model, padded, lengths), model.encode(src)).float()
    logp = logits.log_softmax(-1)
    logp[..., [cfg.pad_id, cfg.unk_id, cfg.bos_id, cfg.mask_id]] = -math.inf
    return logp


def test_at_an_exact_tie_both_searches_take_one_of_the_tied_tokens(random_model):
    """Equal output rows give the two tokens bitwise equal logits in both searches: each takes the
    first of them (argmax's rule), so the outputs are equal and never hold the other."""
    model = _tied_model(random_model, 0.0)
    src = make_sources([random.Random(0).randint(1, 20) for _ in range(60)], seed=0)
    greedy, spec = (
        decode(model, src, DecodeConfig(beam=1)),
        decode(model, src, DecodeConfig(mode="speculative")),
    )
    assert spec.tokens == greedy.tokens
    assert sum(t.count(TIE_A) for t in greedy.tokens) > 50, "the tie was seldom at the top: no test"
    assert all(TIE_B not in t for t in greedy.tokens + spec.tokens)


def test_speculative_equals_greedy_except_at_floating_point_near_ties(random_model):
    """`speculative` is AR greedy up to floating-point near-ties: its verify pass computes a row among
    several (other shapes, other summation orders than greedy's one-row step), so where the two best
    tokens are within rounding error of each other either may win (greedy batched against greedy alone
    differs there too). With TIE_B's output row TIE_A's times (1 + 1e-6 noise), an output that differs
    from greedy's first differs at a near-tie on greedy's path (a top-2 margin below 1e-3), between the
    two tied tokens, both of them argmaxes within 1e-4; everywhere else they are the same tokens."""
    model = _tied_model(random_model, 1e-6)
    src = make_sources([random.Random(0).randint(1, 20) for _ in range(200)], seed=0)
    greedy, spec = (
        decode(model, src, DecodeConfig(beam=1)),
        decode(model, src, DecodeConfig(mode="speculative")),
    )
    logp = _greedy_log_probs(model, src, greedy.tokens)  # (B, T + 1, V) along greedy's outputs
    top2 = logp.topk(2, dim=-1).values
    near_tie = (top2[..., 0] - top2[..., 1]) < 1e-3  # (B, T + 1)
    agreed = differ = 0  # tokens (EOS included) on which the two agree before any difference
    for b, (ours, theirs) in enumerate(zip(greedy.tokens, spec.tokens, strict=True)):
        if theirs == ours:
            agreed += len(ours) + 1
            continue
        differ += 1
        p = next(i for i, (x, y) in enumerate(zip(ours + [-1], theirs + [-1], strict=False)) if x != y)
        agreed += p
        assert bool(near_tie[b, p]), f"sentence {b}: differs from greedy at {p}, where there is no near-tie"
        assert {ours[p], theirs[p]} == {TIE_A, TIE_B}, f"sentence {b}: differs at {p}, not at the tie"
        best = float(logp[b, p].max())
        assert best - float(logp[b, p, theirs[p]]) < 1e-4 and best - float(logp[b, p, ours[p]]) < 1e-4
    lengths = torch.tensor([len(t) for t in greedy.tokens])
    ties = int((near_tie & (torch.arange(near_tie.shape[1])[None] <= lengths[:, None])).sum())
    assert agreed > 2000 and ties > 100, "no ties or no agreement: the test lost its point"
    print(f"{differ} of {len(src)} outputs differ from greedy's at a near-tie")


@pytest.mark.parametrize("drafting", DRAFTINGS)
def test_zero_length_limit_and_empty_batch(random_model, drafting):
    model = random_model(seed=5)
    enc = model.encode(make_sources([3, 5]))
    limits = torch.tensor([0, 2])
    hyps, stats = speculative_search(model, enc, limits, drafting=drafting)
    ref = greedy_search(model, enc, limits)
    assert hyps.token_lists() == ref.token_lists() and hyps.lengths.tolist() == [0, 2]
    assert stats.rounds >= 2
    empty = decode(
        model, torch.zeros(0, 3, dtype=torch.long), DecodeConfig(mode="speculative"), drafting=drafting
    )
    assert empty.tokens == [] and empty.stats == SpeculativeStats()


@pytest.mark.parametrize("drafting", DRAFTINGS)
def test_memorised_pairs_are_accepted_in_few_rounds(overfit, drafting):
    """Where the NAR view knows the whole output, a round accepts many tokens: the cache survives
    rounds and whole drafts are verified at once (fused: the first round only drafts)."""
    spec = decode(overfit.model, overfit.src, DecodeConfig(mode="speculative"), drafting=drafting)
    assert (
        spec.tokens == decode(overfit.model, overfit.src, DecodeConfig(beam=1)).tokens == overfit.references
    )
    assert spec.stats.rounds_per_sentence <= (3.0 if drafting == "fused" else 2.0)
    assert spec.stats.tokens_per_round >= (2.0 if drafting == "fused" else 3.0)


@pytest.mark.parametrize("drafting", ["keep", "fused"])
@pytest.mark.parametrize("block", [1, 3, None])
def test_a_verify_block_keeps_the_outputs_and_caps_the_rows(random_model, overfit, drafting, block):
    """Verifying at most `block` draft tokens a round changes the cost of a round, never the output;
    where the NAR view knows the whole output, almost every round then gains block + 1 tokens."""
    model = random_model(seed=7, eos_ramp=0.3)
    src = make_sources([random.Random(7).randint(1, 20) for _ in range(30)], seed=7)
    spec = decode(model, src, DecodeConfig(mode="speculative"), drafting=drafting, block=block)
    greedy = decode(model, src, DecodeConfig(beam=1))
    assert spec.tokens == greedy.tokens
    assert spec.scores == pytest.approx(greedy.scores, abs=1e-4)
    for i in range(0, 30, 6):
        assert (
            decode(
                model, src[i : i + 1], DecodeConfig(mode="speculative"), drafting=drafting, block=block
            ).tokens[0]
            == greedy.tokens[i]
        )
    memorised = decode(
        overfit.model, overfit.src, DecodeConfig(mode="speculative"), drafting=drafting, block=block
    )
    assert memorised.tokens == overfit.references
    most = (block or 1000) + 1  # tokens a round can gain (None: the whole rest of the draft)
    assert memorised.stats.tokens_per_round <= most
    full_rounds = sum(-(-(len(ref) + 1) // most) for ref in overfit.references)
    assert memorised.stats.rounds >= full_rounds
    assert memorised.stats.rounds <= full_rounds + (2 if drafting == "fused" else 1) * len(overfit.references)
    with pytest.raises(ValueError, match="block"):
        decode(model, src, DecodeConfig(mode="speculative"), block=0)


def test_a_round_is_two_decoder_passes_for_the_whole_batch(random_model, monkeypatch):
    """No loop over sentences: each round is one NAR and one AR pass, however many sentences."""
    model = random_model(seed=6, eos_ramp=0.3)
    src = make_sources([2, 7, 11, 4, 16, 9, 1, 13], seed=6)
    calls = []
    decode = model.decode
    monkeypatch.setattr(
        model, "decode", lambda view, enc, cache=None: calls.append(1) or decode(view, enc, cache)
    )
    hyps, stats = speculative_search(model, model.encode(src), max_output_lengths(model, src, 1.2, 10))
    most_rounds = stats.rounds  # upper bound; the loop runs max(rounds per sentence) times
    assert len(calls) <= 2 * most_rounds
    assert len(calls) <= 2 * (int(hyps.lengths.max()) + 1)  # never more than a pass pair per token
    # fused: one pass per round, the first of which only drafts
    calls.clear()
    fused, stats = speculative_search(
        model, model.encode(src), max_output_lengths(model, src, 1.2, 10), drafting="fused"
    )
    assert fused.token_lists() == hyps.token_lists()
    assert len(calls) <= int(hyps.lengths.max()) + 2
    assert len(calls) * src.shape[0] >= stats.rounds  # every sentence is in every pass while it runs
    with pytest.raises(ValueError, match="drafting"):
        speculative_search(model, model.encode(src), max_output_lengths(model, src, 1.2, 10), drafting="x")


def test_translator_cli_and_evaluate(toy_checkpoint, toy_data, tmp_path, capsys):
    translator = Translator.load(toy_checkpoint)
    texts = _varied_sentences(24, seed=7) + ["", "casa"]
    stats = SpeculativeStats()
    assert translator.generate(texts, mode="speculative", stats=stats) == translator.generate(
        texts, mode="ar", beam=1
    )
    assert stats.sentences == 25  # the empty line needs no decoding
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert (
        main(
            [
                *("generate", "--checkpoint", str(toy_checkpoint), "--mode", "speculative"),
                *("--input", str(source), "--dtype", "float32"),  # as the Translator above, whatever the CPU
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == translator.generate(texts, mode="ar", beam=1)
    report = tmp_path / "spec.json"
    argv = ["evaluate", "--checkpoint", str(toy_checkpoint), "--data", str(toy_data), "--mode", "speculative"]
    assert main([*argv, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "speculative (= AR greedy)" in out and "tokens per round" in out
    record = json.loads(report.read_text())
    assert record["tokens_per_round"] > 1.0 and record["rounds_per_sentence"] >= 1.0


def test_bad_mode_is_a_clear_error(toy_checkpoint, capsys):
    translator = Translator.load(toy_checkpoint)
    with pytest.raises(JanusError, match="speculative"):
        translator.generate(["casa"], mode="speculate")
    with pytest.raises(SystemExit) as e:  # argparse: exit 2, names the choices
        main(["generate", "--checkpoint", str(toy_checkpoint), "--mode", "speculate"])
    assert e.value.code == 2 and "speculative" in capsys.readouterr().err


def test_help_describes_speculative(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "speculative" in out and "AR greedy's (--beam is ignored) up to floating-point near-ties" in out
