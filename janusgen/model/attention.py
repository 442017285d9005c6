"""Attention, and the fastest exact kernel for each pattern of who-sees-whom.

A mask is kept in the form that describes it (a key padding, a view's visibility, a causal block
structure, a relative-position bias) rather than as a dense tensor, and turned into what the kernel in
use needs, once per pass (every layer shares it):
- on a CPU, and wherever nothing faster applies: a dense boolean mask, or a float bias with -inf,
  for PyTorch's scaled-dot-product attention (the arithmetic of every earlier version);
- on a GPU, no mask at all where none is needed (no padding; the AR view, whose rows are causal over
  the content entries, as one `is_causal` call per stream), so that flash / cuDNN attention applies;
  and FlexAttention (PyTorch >= 2.5) for the views with a relative-position bias: a block mask from
  the view's visibility and the bias as a score modification, instead of a (B, heads, R, C) float
  tensor that rules out every fused kernel.
`JANUSGEN_ATTENTION=sdpa` turns the GPU fast paths off (the dense masks everywhere).
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# smallest rows x entries worth a FlexAttention call (an incremental step has 1-2 rows: the dense bias of
# so few rows is cheap, and a block mask would be built for every step)
FLEX_MIN_SCORES = 4096


@dataclass
class KeyPadding:
    """Every row sees every real key: the encoder's self-attention and the decoder's cross-attention.
    `valid` (B, C) bool, or None when no key is padding."""

    valid: torch.Tensor | None

    def dense(self, dtype: torch.dtype) -> torch.Tensor | None:
        return None if self.valid is None else self.valid[:, None, None, :]  # (B, 1, 1, C)


@dataclass
class RelativeBias:
    """A learned bias per head and clipped distance key position - row position (model/transformer.py)."""

    table: torch.Tensor  # (2 * clip + 1, heads)
    clip: int
    row_positions: torch.Tensor  # (B, R)
    key_positions: torch.Tensor  # (B, C)

    def dense(self) -> torch.Tensor:
        distance = self.key_positions[:, None, :] - self.row_positions[:, :, None]  # (B, R, C)
        index = distance.clamp(-self.clip, self.clip) + self.clip
        return F.embedding(index, self.table).permute(0, 3, 1, 2)  # (B, heads, R, C)


@dataclass
class ViewMask:
    """The decoder's self-attention in one view: `visible` (B, R, C) bool or None (every entry), an
    optional relative-position bias, and `causal_blocks` > 0 when the rows are that many blocks of C
    rows in which row i sees the entries <= i (padding aside): then the visibility is causal per block.
    The dense form is built once and reused by every layer."""

    visible: torch.Tensor | None
    bias: RelativeBias | None = None
    causal_blocks: int = 0
    _dense: dict[torch.dtype, torch.Tensor | None] = field(default_factory=dict, repr=False)
    _flex: Any = field(default=None, repr=False)

    def dense(self, dtype: torch.dtype) -> torch.Tensor | None:
        """(B, 1, R, C) bool, or with the bias (B, heads, R, C) float with -inf where not visible."""
        if dtype not in self._dense:
            if self.bias is None:
                mask = None if self.visible is None else self.visible[:, None]
            else:
                mask = self.bias.dense()
                if self.visible is not None:
                    mask = mask.masked_fill(~self.visible[:, None], float("-inf"))
                mask = mask.to(dtype)
            self._dense[dtype] = mask
        return self._dense[dtype]


Mask = KeyPadding | ViewMask | None


FAST_PATH_DEVICES = ("cuda",)  # the tests add "cpu" to check the fast paths against the dense masks


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, dropout: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v. q: (B, heads, R, d); k, v: (B, heads, C, d)."""
    if q.device.type in FAST_PATH_DEVICES and _fast_paths_on():
        out = _gpu_fast_path(q, k, v, mask, dropout)
        if out is not None:
            return out
    dense = None if mask is None else mask.dense(q.dtype)
    if q.device.type == "cpu" and q.dtype != torch.float32:
        # on CPU the fused kernel is ~2x slower than the plain one in bf16 / fp16 (measured)
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, dropout_p=dropout)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, dropout_p=dropout)


def _fast_paths_on() -> bool:
    return os.environ.get("JANUSGEN_ATTENTION", "auto") != "sdpa"


def _gpu_fast_path(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, dropout: float
) -> torch.Tensor | None:
    """The result by a mask-free or FlexAttention kernel, or None where only the dense mask will do."""
    if mask is None or (isinstance(mask, KeyPadding) and mask.valid is None):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    if not isinstance(mask, ViewMask):
        return None
    if mask.bias is None and mask.visible is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    if mask.bias is None and mask.causal_blocks:
        return causal_blocks(q, k, v, mask.causal_blocks, dropout)
    if mask.bias is not None and dropout == 0.0 and q.shape[2] * k.shape[2] >= FLEX_MIN_SCORES:
        return _flex_or_none(q, k, v, mask)
    return None


def causal_blocks(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: int, dropout: float
) -> torch.Tensor:
    """Attention where the R = blocks x C rows are `blocks` blocks, row i of each seeing the entries
    0 .. i: one `is_causal` call per block (no mask tensor: flash attention applies)."""
    c = k.shape[2]
    parts = [
        F.scaled_dot_product_attention(q[:, :, b * c : (b + 1) * c], k, v, dropout_p=dropout, is_causal=True)
        for b in range(blocks)
    ]
    return torch.cat(parts, dim=2)


_FLEX_BROKEN: list[str] = []  # the first failure's message: FlexAttention is then not tried again


def _flex_or_none(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: ViewMask) -> torch.Tensor | None:
    if _FLEX_BROKEN:
        return None
    kernel = _flex_attention(q.device.type)
    if kernel is None:
        return None
    try:
        if mask._flex is None:
            mask._flex = _flex_inputs(mask, q.shape[0], q.shape[2], k.shape[2], q.device)
        block_mask, score_mod = mask._flex
        return kernel(q, k, v, score_mod=score_mod, block_mask=block_mask)
    except Exception as e:  # a torch whose FlexAttention cannot compile this: the dense path still can
        _FLEX_BROKEN.append(str(e))
        warnings.warn(f"FlexAttention failed ({e}); using dense attention masks from now on", stacklevel=2)
        return None


@functools.cache
def _flex_attention(device_type: str) -> Any:
    """FlexAttention, compiled for varying lengths on a GPU (uncompiled it materialises the scores: the
    tests' CPU check), or None on a PyTorch without it."""
    try:
        from torch.nn.attention.flex_attention import flex_attention
    except ImportError:
        return None
    return torch.compile(flex_attention, dynamic=True) if device_type == "cuda" else flex_attention


def _flex_inputs(
    mask: ViewMask, batch: int, rows: int, entries: int, device: torch.device
) -> tuple[Any, Any]:
    """The block mask of the view's visibility and the relative bias as a score modification (the
    view's tensors may broadcast over the batch or the rows: FlexAttention indexes them per element)."""
    from torch.nn.attention.flex_attention import create_block_mask

    bias = mask.bias
    assert bias is not None
    table, clip = bias.table, bias.clip
    row_pos = bias.row_positions.expand(batch, rows)
    key_pos = bias.key_positions.expand(batch, entries)
    visible = None if mask.visible is None else mask.visible.expand(batch, rows, entries)

    def score_mod(score, b, h, row, key):  # noqa: ANN001, ANN202 (FlexAttention's calling convention)
        distance = (key_pos[b, key] - row_pos[b, row]).clamp(-clip, clip) + clip
        return score + table[distance, h].to(score.dtype)

    block_mask = None
    if visible is not None:

        def mask_mod(b, h, row, key):  # noqa: ANN001, ANN202
            return visible[b, row, key]

        block_mask = create_block_mask(mask_mod, batch, None, rows, entries, device=device)
    return block_mask, score_mod


class Attention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        assert d_model % heads == 0, "d_model must be divisible by heads"
        self.heads = heads
        self.head_dim = d_model // heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self._fused: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # (key, weight, bias) cache
        # modules made for decoding (model/inference.py): "qkv", the three projections as one, possibly
        # int8; a plain dict, so they stay out of the state dict and the optimizer
        self.inference: dict[str, nn.Module] = {}

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, T, head_dim)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.k_proj(memory)), self.split_heads(self.v_proj(memory))

    def project_qkv(
        self, x: torch.Tensor, num_content: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries of every row of x (B, R, d), keys and values of its first `num_content` rows, split
        into heads. One matmul with the three weights side by side where the extra keys and values it
        computes are few (every row is content, or an incremental step's one query row per content row):
        a decoding step is a chain of small matmuls whose cost is mostly per call."""
        rows = x.shape[1]
        if rows == num_content or (not torch.is_grad_enabled() and rows <= 2 * num_content):
            qkv = self.inference.get("qkv")
            if qkv is not None and not torch.is_grad_enabled():
                fused = qkv(x)
            else:
                fused = F.linear(x, *self._fused_weights())
            q, k, v = fused.split(self.heads * self.head_dim, dim=-1)
            k, v = k[:, :num_content], v[:, :num_content]
            return self.split_heads(q), self.split_heads(k), self.split_heads(v)
        return (self.split_heads(self.q_proj(x)), *self.project_kv(x[:, :num_content]))

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The q, k, v weights and biases concatenated; kept while the weights stay the same (decoding),
        made anew when gradients must reach the three (training)."""
        parts = (self.q_proj, self.k_proj, self.v_proj)
        if torch.is_grad_enabled() or torch.compiler.is_compiling():  # compiled: inductor folds the cat
            return torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts])
        key = tuple((p.weight.data_ptr(), p.weight._version, p.bias._version, p.weight.dtype) for p in parts)
        if self._fused is None or self._fused[0] != key:
            self._fused = (key, torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts]))
        return self._fused[1], self._fused[2]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask) -> torch.Tensor:
        """q: (B, heads, R, head_dim); k, v: (B, heads, C, head_dim); mask: who sees whom
        (model/attention.py). The output projection of the attended values: (B, R, d)."""
        out = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        b, _, r, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, r, -1))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask) -> torch.Tensor:
        """x: (B, R, d) queries; k, v: (B, heads, C, head_dim) (the encoder's, for cross-attention)."""
        return self.attend(self.split_heads(self.q_proj(x)), k, v, mask)
