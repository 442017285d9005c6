"""The GPU's attention fast paths (no mask, causal blocks, FlexAttention with the relative bias as a
score modification) compute what the dense masks compute, on every row that is read; checked on the
CPU by switching the fast paths on there."""

from __future__ import annotations

import pytest
import torch

from janusgen.config import DecodeConfig
from janusgen.decoding import decode
from janusgen.model import attention
from janusgen.model.layout import masked_view
from tests.model.test_transformer_options import make_batch, tiny


def _outputs(model) -> dict[str, torch.Tensor]:
    """Encoder states, teacher-forced AR logits at real targets, NAR / AUX logits at masked positions."""
    cfg = model.cfg
    src, tgt, masked = make_batch(cfg)
    enc = model.encode(src)
    real = tgt[:, 1:] != cfg.pad_id
    view = masked_view(tgt, masked, cfg.pad_id, cfg.mask_id)
    hidden = model.decode(view, enc)
    index = view.placeholder_rows[:, :, None].expand(-1, -1, hidden.shape[-1])
    valid = view.masked_valid
    return {
        "encoder": enc.states[enc.valid],
        "ar": model.ar_logits(tgt, enc)[real],
        "nar": model.logits(hidden.gather(1, index))[valid],
        "aux": model.logits(hidden[:, view.num_content :])[valid],
    }


@pytest.mark.parametrize("relative_positions", [0, 4])
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_fast_paths_equal_the_dense_masks(monkeypatch, relative_positions):
    model = tiny(relative_positions=relative_positions)
    monkeypatch.setattr(attention, "_FLEX_BROKEN", [])
    with torch.no_grad():
        dense = _outputs(model)
        calls = []
        monkeypatch.setattr(attention, "FAST_PATH_DEVICES", ("cpu",))
        for name in ("causal_blocks", "_flex_or_none"):
            original = getattr(attention, name)
            monkeypatch.setattr(attention, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
        monkeypatch.setattr(attention, "FLEX_MIN_SCORES", 1)
        fast = _outputs(model)
    assert attention._FLEX_BROKEN == []
    # the AR view goes through causal blocks without a bias, through FlexAttention with one
    assert ("_flex_or_none" if relative_positions else "causal_blocks") in calls
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_decoding_with_the_fast_paths_gives_the_same_outputs(monkeypatch):
    model = tiny(relative_positions=4)
    src, _, _ = make_batch(model.cfg)
    expected = [decode(model, src, DecodeConfig(beam=b)).tokens for b in (1, 3)] + [
        decode(model, src, DecodeConfig(mode="nar", iterations=4)).tokens
    ]
    monkeypatch.setattr(attention, "FAST_PATH_DEVICES", ("cpu",))
    monkeypatch.setattr(attention, "FLEX_MIN_SCORES", 1)
    monkeypatch.setattr(attention, "_FLEX_BROKEN", [])
    got = [decode(model, src, DecodeConfig(beam=b)).tokens for b in (1, 3)] + [
        decode(model, src, DecodeConfig(mode="nar", iterations=4)).tokens
    ]
    assert attention._FLEX_BROKEN == []
    assert got == expected


def test_an_unpadded_batch_needs_no_mask():
    model = tiny()
    src, _, _ = make_batch(model.cfg)
    full = src[:1]  # the first source has no padding
    assert model.encode(full, padded=False).key_padding().dense(torch.float32) is None
    torch.testing.assert_close(model.encode(full, padded=False).states, model.encode(full).states)


def test_causal_blocks_give_the_same_gradients(monkeypatch):
    """Training goes through the fast paths too: the gradient of a JANUS loss without a relative bias.
    (FlexAttention has no backward on a CPU: benchmarks/gpu_check.py compares its gradients on a GPU.)"""
    from janusgen.objectives import JanusObjective
    from janusgen.presets import objective_preset

    def grads() -> dict[str, torch.Tensor]:
        model = tiny(relative_positions=0).train()
        src, tgt, _ = make_batch(model.cfg)
        JanusObjective(objective_preset("janus"), seed=0)(model, src, tgt).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    dense = grads()
    monkeypatch.setattr(attention, "FAST_PATH_DEVICES", ("cpu",))
    monkeypatch.setattr(attention, "FLEX_MIN_SCORES", 1)
    monkeypatch.setattr(attention, "_FLEX_BROKEN", [])
    fast = grads()
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], atol=1e-5, rtol=1e-4, msg=name)


def test_each_rank_takes_a_gpu_it_can_see():
    from janusgen.errors import JanusError
    from janusgen.hardware import cuda_index

    assert cuda_index(0, 8) == 0 and cuda_index(5, 8) == 5
    assert cuda_index(5, 1) == 0  # SLURM --gpus-per-task=1: each rank sees only its own GPU
    with pytest.raises(JanusError, match="LOCAL_RANK 3 but this process sees 2 GPUs"):
        cuda_index(3, 2)
