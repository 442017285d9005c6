"""Self-speculative decoding: the contract is that its outputs are AR greedy's, token for token."""

import json
import random

import pytest
import torch

from janusgen.cli import main
from janusgen.decoding.api import decode_ar, decode_speculative
from janusgen.decoding.common import max_output_lengths
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
    greedy = decode_ar(model, src, beam=1)
    spec = decode_speculative(model, src, drafting=drafting)
    assert spec.tokens == greedy.tokens
    assert spec.scores == pytest.approx(greedy.scores, abs=1e-4)
    assert spec.log_probs == pytest.approx(greedy.log_probs, abs=1e-4)
    for i in range(0, len(lengths), 5):  # alone: no padding, no other sentences advancing differently
        assert decode_speculative(model, src[i : i + 1], drafting=drafting).tokens[0] == greedy.tokens[i]


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
    greedy = decode_ar(model, src, beam=1)
    stats = SpeculativeStats()
    for start in range(0, len(ids), 50):  # batched, mixed lengths
        decoded = decode_speculative(model, src[start : start + 50], drafting=drafting)
        assert decoded.tokens == greedy.tokens[start : start + 50]
        stats.add(decoded.stats)
    for i in range(0, len(ids), 3):  # batch 1
        one = torch.tensor([ids[i]])
        assert decode_speculative(model, one, drafting=drafting).tokens[0] == greedy.tokens[i], texts[i]
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
        spec = decode_speculative(model, src, a, b, drafting=drafting)
        assert spec.tokens == decode_ar(model, src, 1, a, b).tokens
    limits = max_output_lengths(model, src, 0.0, 3)
    hyps, _ = speculative_search(model, model.encode(src), limits, drafting=drafting)
    assert hyps.lengths.tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("drafting", DRAFTINGS)
def test_zero_length_limit_and_empty_batch(random_model, drafting):
    model = random_model(seed=5)
    enc = model.encode(make_sources([3, 5]))
    limits = torch.tensor([0, 2])
    hyps, stats = speculative_search(model, enc, limits, drafting=drafting)
    ref = greedy_search(model, enc, limits)
    assert hyps.token_lists() == ref.token_lists() and hyps.lengths.tolist() == [0, 2]
    assert stats.rounds >= 2
    empty = decode_speculative(model, torch.zeros(0, 3, dtype=torch.long), drafting=drafting)
    assert empty.tokens == [] and empty.stats == SpeculativeStats()


@pytest.mark.parametrize("drafting", DRAFTINGS)
def test_memorised_pairs_are_accepted_in_few_rounds(overfit, drafting):
    """Where the NAR view knows the whole output, a round accepts many tokens: the cache survives
    rounds and whole drafts are verified at once (fused: the first round only drafts)."""
    spec = decode_speculative(overfit.model, overfit.src, drafting=drafting)
    assert spec.tokens == decode_ar(overfit.model, overfit.src, beam=1).tokens == overfit.references
    assert spec.stats.rounds_per_sentence <= (3.0 if drafting == "fused" else 2.0)
    assert spec.stats.tokens_per_round >= (2.0 if drafting == "fused" else 3.0)


@pytest.mark.parametrize("drafting", ["keep", "fused"])
@pytest.mark.parametrize("block", [1, 3, None])
def test_a_verify_block_keeps_the_outputs_and_caps_the_rows(random_model, overfit, drafting, block):
    """Verifying at most `block` draft tokens a round changes the cost of a round, never the output;
    where the NAR view knows the whole output, almost every round then gains block + 1 tokens."""
    model = random_model(seed=7, eos_ramp=0.3)
    src = make_sources([random.Random(7).randint(1, 20) for _ in range(30)], seed=7)
    spec = decode_speculative(model, src, drafting=drafting, block=block)
    greedy = decode_ar(model, src, beam=1)
    assert spec.tokens == greedy.tokens
    assert spec.scores == pytest.approx(greedy.scores, abs=1e-4)
    for i in range(0, 30, 6):
        assert (
            decode_speculative(model, src[i : i + 1], drafting=drafting, block=block).tokens[0]
            == greedy.tokens[i]
        )
    memorised = decode_speculative(overfit.model, overfit.src, drafting=drafting, block=block)
    assert memorised.tokens == overfit.references
    most = (block or 1000) + 1  # tokens a round can gain (None: the whole rest of the draft)
    assert memorised.stats.tokens_per_round <= most
    full_rounds = sum(-(-(len(ref) + 1) // most) for ref in overfit.references)
    assert memorised.stats.rounds >= full_rounds
    assert memorised.stats.rounds <= full_rounds + (2 if drafting == "fused" else 1) * len(overfit.references)
    with pytest.raises(ValueError, match="block"):
        decode_speculative(model, src, block=0)


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
            ["generate", "--checkpoint", str(toy_checkpoint), "--mode", "speculative", "--input", str(source)]
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
    assert "speculative" in capsys.readouterr().out
