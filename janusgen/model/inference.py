"""A trained model made ready for decoding: the projections a decoding step calls fused, and optionally
int8 weights.

A decoding step is a chain of small matmuls whose cost is mostly per call (BENCHMARKS.md): the query,
key and value projections of each self-attention become one Linear. With `quantize="int8"` the output
projection (the embedding matrix, when tied) becomes a Linear of its own too, and every Linear of the
model (the fused ones and the output projection included) PyTorch's dynamically quantized int8 Linear:
int8 weights, activations quantized per call, on the CPU. The modules made here live in plain
`inference` dicts, outside the state dict and the optimizer; training ignores them (they are used only
where no gradient is needed).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from janusgen.config import QUANTIZATIONS
from janusgen.errors import JanusError
from janusgen.model.transformer import JanusTransformer


def prepare_for_inference(model: JanusTransformer, quantize: str = "none") -> JanusTransformer:
    """`model`, in evaluation mode, with its decoding modules made (in place); see the module docstring."""
    if quantize not in QUANTIZATIONS:
        raise JanusError(f"--quantize {quantize!r}: choose {' or '.join(QUANTIZATIONS)}")
    weight = model.embed.weight
    if quantize == "int8" and weight.device.type != "cpu":
        raise JanusError(f"--quantize int8 runs on the CPU only (the model is on {weight.device})")
    if quantize == "int8" and weight.dtype != torch.float32:
        raise JanusError("--quantize int8 quantizes float32 weights: load with --dtype float32")
    model.eval()
    with torch.no_grad():
        for layer in [*model.encoder_layers, *model.decoder_layers]:
            attn = layer.self_attn
            parts = (attn.q_proj, attn.k_proj, attn.v_proj)
            qkv = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts)).to(weight)
            qkv.weight.copy_(torch.cat([p.weight for p in parts]))
            qkv.bias.copy_(torch.cat([p.bias for p in parts]))
            attn.inference["qkv"] = qkv
        if quantize == "int8":  # the output projection gets a Linear of its own to quantize
            out = model.embed.weight if model.cfg.tie_output else model.output_projection.weight
            head = nn.Linear(out.shape[1], out.shape[0], bias=False).to(weight)
            head.weight.copy_(out)
            model.inference["output"] = head
    if quantize == "int8":
        _quantize_int8(model)
    return model


def _quantize_int8(model: JanusTransformer) -> None:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # PyTorch says its quantization moves to torchao; it works as it is
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
        holders = [model, *(layer.self_attn for layer in [*model.encoder_layers, *model.decoder_layers])]
        for holder in holders:
            for name, module in holder.inference.items():
                box = nn.ModuleDict(
                    {"module": module}
                )  # quantize_dynamic replaces children, not its argument
                quantize_dynamic(box, {nn.Linear}, dtype=torch.qint8, inplace=True)
                holder.inference[name] = box["module"]
