"""Smoke tests on every device this machine has: the CPU always, a CUDA GPU when there is one (skipped
otherwise; `benchmarks/gpu_check.py` runs this file on a GPU). Each exercises a path whose failures
would be device-specific: the model's views, every objective's loss and gradient, one training step in
each precision the device supports, every decoding mode, and the server."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from janusgen.decoding.translator import Translator
from janusgen.model.layout import masked_view
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.presets import model_preset, objective_preset
from janusgen.training.config import TrainConfig
from janusgen.training.distributed import DistributedContext


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)


def _precisions(device: torch.device) -> list[str]:
    if device.type == "cpu":
        return ["fp32"]
    return ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]


def _model(device: torch.device, **changes) -> JanusTransformer:
    torch.manual_seed(0)
    cfg = dataclasses.replace(model_preset("tiny"), vocab_size=40, **changes)
    return JanusTransformer(cfg).to(device)


def _batch(device: torch.device, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(5, cfg.vocab_size, (3, 9), generator=g)
    tgt = torch.randint(5, cfg.vocab_size, (3, 8), generator=g)
    src[:, -1], src[2, 5:] = cfg.eos_id, cfg.pad_id
    src[2, 4] = cfg.eos_id
    tgt[:, 0], tgt[:, -1], tgt[1, 5:] = cfg.bos_id, cfg.eos_id, cfg.pad_id
    tgt[1, 4] = cfg.eos_id
    return src.to(device), tgt.to(device)


@pytest.mark.parametrize("relative_positions", [0, 4])
def test_every_view_runs(device, relative_positions):
    model = _model(device, relative_positions=relative_positions).eval()
    src, tgt = _batch(device, model.cfg)
    with torch.no_grad():
        enc = model.encode(src)
        masked = torch.zeros_like(tgt, dtype=torch.bool)
        masked[:, 2:4] = True
        view = masked_view(tgt, masked, model.cfg.pad_id, model.cfg.mask_id)
        outputs = [enc.states, model.length_logits(enc), model.ar_logits(tgt, enc), model.decode(view, enc)]
    assert all(torch.isfinite(x).all() for x in outputs)


@pytest.mark.parametrize("objective", ["ar", "cmlm", "janus"])
def test_every_objective_gives_a_finite_loss_and_gradient(device, objective):
    model = _model(device).train()
    src, tgt = _batch(device, model.cfg)
    for precision in _precisions(device):
        model.zero_grad()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = JanusObjective(objective_preset(objective), seed=0)(model, src, tgt)
        out.loss.backward()
        assert torch.isfinite(out.loss), precision
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), precision


def test_training_steps_in_every_precision(device, toy_data, tmp_path, make_trainer_on):
    for precision in _precisions(device):
        cfg = TrainConfig(max_updates=2, max_tokens=512, warmup_updates=1, precision=precision, seed=3)
        trainer = make_trainer_on(device, toy_data, tmp_path / precision, objective_preset("janus"), cfg)
        stream = iter(trainer.train_data.sampler)
        logs, _, tokens = trainer.train_step([trainer.train_maker[next(stream)]])
        assert tokens > 0 and all(torch.isfinite(v) for v in logs.values()), precision
        assert trainer.validate()["loss"] > 0, precision


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "ar", "beam": 1},
        {"mode": "ar", "beam": 4},
        {"mode": "nar", "iterations": 3},
        {"mode": "nar", "iterations": 3, "rerank": True, "collapse_repeats": True},
        {"mode": "speculative"},
    ],
)
def test_every_decoding_mode(device, toy_checkpoint, settings):
    texts = ["casa perro", "sol luna mar rio monte", "agua"]
    on_device = Translator.load(toy_checkpoint, device=str(device), dtype="float32")
    assert on_device.device.type == device.type
    outputs = on_device.generate(texts, **settings)
    assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)
    if settings["mode"] == "speculative":  # exactly AR greedy, on any device
        assert outputs == on_device.generate(texts, mode="ar", beam=1)


def test_the_server(device, toy_checkpoint):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from janusgen.serving.config import ServeConfig
    from janusgen.serving.server import background_server

    translator = Translator.load(toy_checkpoint, device=str(device), dtype="float32")
    with background_server(translator, ServeConfig(host="127.0.0.1", port=0)) as url:
        reply = httpx.post(f"{url}/translate", json={"texts": ["casa perro"], "mode": "nar"}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["translations"] == translator.generate(["casa perro"], mode="nar")


def test_a_context_on_the_device_trains(device):
    ctx = DistributedContext(0, 1, 0, device)
    assert ctx.device.type == device.type and not ctx.enabled
