"""A trained model made ready for decoding: the projections a decoding step calls fused, and optionally
int8 weights.

A decoding step is a chain of small matmuls whose cost is mostly per call (BENCHMARKS.md): the query,
key and value projections of each self-attention become one Linear. With `quantize="int8"` the output
projection (the embedding matrix, when tied) becomes a Linear of its own too, and every Linear of the
model (the fused ones and the output projection included) PyTorch's dynamically quantized int8 Linear:
int8 weights, activations quantized per call, on the CPU. Otherwise, on a CPU with oneDNN, every float32
Linear keeps a copy of its weight in oneDNN's blocked layout ("prepacked", `PackedLinear`): a matmul of a
few rows (a beam, a small batch) then runs 1.3-3x faster than BLAS on the plain weight, and the output
projection even for one row (BENCHMARKS.md, CPU decoding speed). The modules made here live in plain
`inference` dicts or share the parameters of the ones they replace, so the state dict is unchanged;
training ignores them (they are used only where no gradient is needed).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
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
    elif PackedLinear.runs_on(weight):
        _prepack(model)
    return model


class PackedLinear(nn.Linear):
    """A Linear whose weight also lives in oneDNN's blocked layout, for decoding on a CPU. It shares its
    parameters with the Linear it replaces (same state dict); with gradients on, or after the weight
    changed, it computes as a plain Linear (and repacks when next used without gradients). A single row
    goes to BLAS's matrix-vector product on layers of up to `ONE_ROW_BLAS` weights, where it beats the
    packed matmul (d256's, AVX-512 and AVX2 alike); on larger ones (d768's, a vocabulary projection)
    the packed one is 1.1-2.1x faster."""

    BATCH_HINT = 64  # rows oneDNN's layout is chosen for; measured alike from 4 to 160 rows
    ONE_ROW_BLAS = 1 << 18  # weights up to which one row is faster by BLAS (256 x 1024)
    _packed: tuple[tuple[int, int], torch.Tensor] | None = None  # (the weight's pointer and version, packed)

    @staticmethod
    def runs_on(weight: torch.Tensor) -> bool:
        return (
            weight.device.type == "cpu"
            and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        )

    @classmethod
    def replacing(cls, linear: nn.Linear) -> PackedLinear:
        bias = linear.bias is not None
        packed = cls(linear.in_features, linear.out_features, bias=bias, device="meta")  # allocates nothing
        packed.weight, packed.bias = linear.weight, linear.bias
        return packed

    def _packed_weight(self) -> torch.Tensor:
        version = (self.weight.data_ptr(), self.weight._version)
        if self._packed is None or self._packed[0] != version:
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, self.BATCH_HINT)
            self._packed = (version, packed)
        return self._packed[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        one_narrow_row = rows == 1 and self.in_features * self.out_features <= self.ONE_ROW_BLAS
        # under torch.compile the plain Linear: inductor packs weights itself, and cannot lower ours
        plain = torch.is_grad_enabled() or torch.compiler.is_compiling() or x.dtype != torch.float32
        if plain or one_narrow_row:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        if not flat.is_contiguous():
            flat = flat.contiguous()
        out = torch.ops.mkldnn._linear_pointwise(flat, self._packed_weight(), self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)


def _prepack(model: JanusTransformer) -> None:
    """Every Linear of `model` (and of its `inference` dicts) a `PackedLinear`; the output projection
    one too, sharing the embedding (or output) weight."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedLinear.replacing(child))
        holder = getattr(parent, "inference", None)
        if isinstance(holder, dict):
            for name, module in list(holder.items()):
                if type(module) is nn.Linear:
                    holder[name] = PackedLinear.replacing(module)
    if "output" not in model.inference:
        out = model.embed.weight if model.cfg.tie_output else model.output_projection.weight
        head = PackedLinear(out.shape[1], out.shape[0], bias=False, device="meta")
        head.weight = out
        model.inference["output"] = head


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
