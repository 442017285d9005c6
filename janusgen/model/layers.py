"""The layers of the encoder and the two-stream decoder: feed-forward, encoder layer, decoder layer
(self-attention over the content rows, cross-attention to the encoder, feed-forward; the same weights
for content and query rows), and sinusoidal positions."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from janusgen.model.attention import Attention, KeyPadding, ViewMask
from janusgen.model.cache import LayerCache
from janusgen.model.config import ModelConfig

if TYPE_CHECKING:
    from janusgen.model.transformer import Encoded


class Dropout(nn.Dropout):
    """nn.Dropout that costs nothing where it does nothing (evaluation, p = 0): decoding runs every
    layer's dropout once per generated token."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.training and self.p > 0 else x


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.activation = {"relu": F.relu, "gelu": F.gelu}[activation]
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation, cfg.activation_dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.dropout = Dropout(cfg.dropout)
        self.pre_norm = cfg.pre_norm

    def forward(self, x: torch.Tensor, visible: KeyPadding) -> torch.Tensor:
        if self.pre_norm:
            h = self.norm1(x)
            x = x + self.dropout(self.self_attn.attend(*self.self_attn.project_qkv(h, h.shape[1]), visible))
            return x + self.dropout(self.ffn(self.norm2(x)))
        a = self.self_attn.attend(*self.self_attn.project_qkv(x, x.shape[1]), visible)
        x = self.norm1(x + self.dropout(a))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    """One layer of the two-stream decoder: self-attention over the content rows, cross-attention to
    the encoder, feed-forward; the same weights for content and query rows."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.cross_attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation, cfg.activation_dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.norm3 = nn.LayerNorm(cfg.d_model)
        self.dropout = Dropout(cfg.dropout)
        self.pre_norm = cfg.pre_norm

    def forward(
        self,
        x: torch.Tensor,
        num_content: int,
        self_mask: ViewMask,
        enc: Encoded,
        cache: LayerCache | None = None,
        cached: int = 0,
        capacity: int = 0,
    ) -> torch.Tensor:
        """x: (B·g, R, d) rows, g per row of `enc` (consecutive: a search's beams), the first `num_content`
        of each row's R content; self_mask: the self-attention
        mask over the `cached` + num_content content entries (see JanusTransformer.self_attention_mask).
        With a cache, the new content keys/values are written after its `cached` entries (incremental
        decoding; `capacity`: the entries to make room for)."""
        h = self.norm1(x) if self.pre_norm else x
        q, k, v = self.self_attn.project_qkv(h, num_content)
        if cache is not None:
            k, v = cache.append(k, v, cached, capacity)
        a = self.dropout(self.self_attn.attend(q, k, v, self_mask))
        x = x + a if self.pre_norm else self.norm1(x + a)

        if cache is not None and cache.cross_k is not None:
            ck, cv = cache.cross_k, cache.cross_v
        else:
            ck, cv = self.cross_attn.project_kv(enc.states)
            if cache is not None:
                cache.cross_k, cache.cross_v = ck, cv
        h = self.norm2(x) if self.pre_norm else x
        # g rows of x per row of enc (a search's beams, sentence-major) attend as ONE row of g·R queries:
        # the encoder keys/values are then kept and read once per sentence, not once per beam
        b, d = ck.shape[0], h.shape[-1]
        a = self.dropout(self.cross_attn(h.reshape(b, -1, d), ck, cv, enc.key_padding()).view(h.shape))
        x = x + a if self.pre_norm else self.norm2(x + a)

        h = self.norm3(x) if self.pre_norm else x
        a = self.dropout(self.ffn(h))
        return x + a if self.pre_norm else self.norm3(x + a)


class SinusoidalPositions(nn.Module):
    def __init__(self, max_positions: int, d_model: int) -> None:
        super().__init__()
        half = d_model // 2
        freq = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
        angle = torch.arange(max_positions)[:, None] * freq[None, :]
        table = torch.cat([angle.sin(), angle.cos()], dim=1)
        if d_model % 2:
            table = F.pad(table, (0, 1))
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]
