"""The entry points: meaningful outputs from a trained model, edge-case inputs, misuse."""

import pytest
import torch

from janusgen.config import DecodeConfig
from janusgen.decoding import Decoded, decode
from janusgen.errors import JanusError

# The overfit model fills wrong lengths confidently too (mean NAR log-prob near 0), so a length beam
# without reranking may keep a wrong length: plain NAR uses the predicted length alone; with the length
# beam, self-reranking lets the AR view reject the wrong ones.
MODES = {
    "greedy": lambda model, src, **kw: decode(model, src, DecodeConfig(beam=1, **kw)),
    "beam": lambda model, src, **kw: decode(model, src, DecodeConfig(beam=5, **kw)),
    "nar": lambda model, src, **kw: decode(
        model, src, DecodeConfig(mode="nar", iterations=4, length_beam=1, **kw)
    ),
    "nar-rerank": lambda model, src, **kw: decode(
        model, src, DecodeConfig(mode="nar", iterations=4, rerank=True, **kw)
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_trained_model_reproduces_what_it_memorised(overfit, mode):
    assert MODES[mode](overfit.model, overfit.src).tokens == overfit.references


@pytest.mark.parametrize("mode", MODES)
def test_empty_source_and_empty_batch(random_model, mode):
    model = random_model()
    eos = torch.tensor([[model.cfg.eos_id]])
    out = MODES[mode](model, eos, max_len_a=0, max_len_b=5)
    assert len(out.tokens) == 1 and 1 <= len(out.tokens[0]) <= 5
    assert MODES[mode](model, eos.new_zeros(0, 3)) == Decoded([], [], [])


@pytest.mark.parametrize("mode", MODES)
def test_sources_longer_than_max_positions_are_refused(random_model, sources, mode):
    model = random_model()  # tiny preset: max_positions = 64
    with pytest.raises(ValueError, match="max_positions=64"):
        MODES[mode](model, sources([10, 64]))
    # extra padding columns are fine: only real tokens count
    padded = torch.nn.functional.pad(sources([10, 63]), (0, 30), value=model.cfg.pad_id)
    assert len(MODES[mode](model, padded, max_len_b=3).tokens) == 2


def test_training_mode_is_refused(random_model, sources):
    model = random_model().train()
    for mode in MODES.values():
        with pytest.raises(ValueError, match="model.eval()"):
            mode(model, sources([3]))


def test_invalid_options_are_refused_before_decoding():
    for options, message in (
        ({"iterations": 0}, "--iterations 0"),
        ({"length_beam": 0}, "--length-beam 0"),
        ({"length_offsets": ()}, "--length-offsets: give between 1"),
        ({"beam": 0}, "--beam 0"),
    ):
        with pytest.raises(JanusError, match=message):
            DecodeConfig(mode="nar", **options)
