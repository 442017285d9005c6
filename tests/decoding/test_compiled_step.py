"""The compiled AR step (DecodeConfig.compile, decoding/stepper.py): the outputs and scores of the eager
step, through the shapes it keeps static (a batch rounded up to a power of two, sentences finishing at
different steps, beams reordered, a decoder start token before BOS), and the eager step, with a warning,
where compiling fails."""

import warnings

import pytest
import torch

from janusgen.config import DecodeConfig
from janusgen.decoding import decode, stepper
from janusgen.presets import model_preset

needs_compile = pytest.mark.skipif(
    not stepper.COMPILE_SUPPORTED, reason="--compile needs PyTorch 2.6 (the torch-floor job runs 2.3)"
)

# sentences of varied lengths, so that the length limits differ and sentences leave the batch one by one
LENGTHS = [3, 9, 5, 14, 7]


@pytest.fixture
def freezing_only(monkeypatch):
    """The weights frozen into the graph, as in use, without the autotuning (slow, and speed is not
    what these tests check)."""
    monkeypatch.setattr(stepper, "COMPILE_OPTIONS", {"freezing": True})


def _decode_both(model, src, beam, fallback=False):
    """Eager, then compiled; unless `fallback`, the compiled one must not fall back to eager."""
    outputs = []
    for compiled in (False, True):
        cfg = DecodeConfig(mode="ar", beam=beam, max_len_a=1.0, max_len_b=4, compile=compiled)
        with warnings.catch_warnings():
            if not fallback:
                warnings.filterwarnings("error", message="--compile")
            outputs.append(decode(model, src, cfg))
    return outputs


def _assert_same(eager, compiled):
    assert compiled.tokens == eager.tokens
    torch.testing.assert_close(
        torch.tensor(compiled.scores), torch.tensor(eager.scores), atol=1e-4, rtol=1e-4
    )


@needs_compile
@pytest.mark.parametrize("beam", [1, 3])
def test_compiled_step_equals_eager(random_model, sources, freezing_only, beam):
    model, src = random_model(eos_ramp=0.3), sources(LENGTHS)  # 5 sentences: 8 rows compiled
    eager, compiled = _decode_both(model, src, beam)
    assert len({len(t) for t in eager.tokens}) >= 3  # guard: the sentences end at different steps
    _assert_same(eager, compiled)


@needs_compile
def test_compiled_step_after_a_decoder_start_token(random_model, sources, freezing_only):
    """A converted BART's prefix (start token, forced BOS) goes into the static cache as steps; the
    content stream's AR view."""
    eos = model_preset("tiny").eos_id
    model = random_model(
        eos_ramp=0.3, decoder_start_id=eos, forced_bos=True, logits_bias=True, ar_stream="content"
    )
    eager, compiled = _decode_both(model, sources(LENGTHS[:3]), 2)
    _assert_same(eager, compiled)


def test_compile_failure_falls_back_to_the_eager_step(random_model, sources, monkeypatch):
    def no_compiler(model):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(stepper, "_compiled", no_compiler)
    monkeypatch.setattr(stepper, "_WARNED", [])
    model, src = random_model(eos_ramp=0.3), sources(LENGTHS)
    with pytest.warns(UserWarning, match=r"--compile: the compiled step failed \(no C\+\+ compiler found\)"):
        eager, compiled = _decode_both(model, src, 2, fallback=True)
    _assert_same(eager, compiled)


@pytest.mark.slow
@needs_compile
def test_compiled_step_with_the_shipped_settings(random_model, sources):
    """Frozen weights, autotuned matmuls, the C++ wrapper: what `--compile` runs."""
    model, src = random_model(eos_ramp=0.3), sources(LENGTHS[:2])
    eager, compiled = _decode_both(model, src, 1)
    _assert_same(eager, compiled)


def test_compile_on_an_older_pytorch_says_so_and_decodes_eagerly(random_model, sources, monkeypatch):
    monkeypatch.setattr(stepper, "COMPILE_SUPPORTED", False)
    monkeypatch.setattr(stepper, "_WARNED", [])
    model, src = random_model(eos_ramp=0.3), sources(LENGTHS[:2])
    with pytest.warns(
        UserWarning, match=r"--compile: the compiled step failed \(needs PyTorch 2\.6 or later"
    ):
        eager, compiled = _decode_both(model, src, 1, fallback=True)
    _assert_same(eager, compiled)
