"""Transformer encoder and two-stream decoder (JANUS), readable top to bottom.

The decoder takes one tensor of rows: `num_content` content rows followed by query rows. Every layer
computes keys and values from the content rows only and lets each row attend to the content entries
its visibility mask allows (model/layout.py builds those masks). Content and query rows share every
weight, so one code path serves the AR view, the NAR/AUX view and plain causal decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from janusgen.config import ModelConfig
from janusgen.model.attention import KeyPadding, Mask, RelativeBias, ViewMask, attend
from janusgen.model.layout import DecoderView, ar_query_offset, ar_view, content_only_ar_view


@dataclass
class Encoded:
    states: torch.Tensor  # (B, S, d)
    valid: torch.Tensor  # (B, S) bool: True for real source tokens
    padded: bool = True  # False when no source is padded: attention to it then needs no mask

    def index_select(self, index: torch.Tensor) -> Encoded:
        return Encoded(self.states.index_select(0, index), self.valid.index_select(0, index), self.padded)

    def key_padding(self) -> KeyPadding:
        return KeyPadding(self.valid if self.padded else None)


@dataclass
class LayerCache:
    """Keys/values of one decoder layer: the content self-attention's, in a buffer of `capacity` entries
    of which the first `DecoderCache.length` are filled (no copy of the whole per step), and the
    encoder's (fixed)."""

    self_k: torch.Tensor | None = None  # (B, heads, capacity, head_dim)
    self_v: torch.Tensor | None = None
    cross_k: torch.Tensor | None = None  # (B, heads, S, head_dim)
    cross_v: torch.Tensor | None = None

    def append(
        self, k: torch.Tensor, v: torch.Tensor, start: int, capacity: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new entries k, v (B, heads, n, head_dim) at `start`; the filled keys and values."""
        end = start + k.shape[2]
        if self.self_k is None or end > self.self_k.shape[2]:
            old = 0 if self.self_k is None else self.self_k.shape[2]
            size = max(end, capacity, 2 * old)  # doubling: amortised O(1) copies per entry
            b, heads, _, head_dim = k.shape
            grown_k, grown_v = k.new_empty(b, heads, size, head_dim), v.new_empty(b, heads, size, head_dim)
            if start:
                grown_k[:, :, :start], grown_v[:, :, :start] = (
                    self.self_k[:, :, :start],
                    self.self_v[:, :, :start],
                )
            self.self_k, self.self_v = grown_k, grown_v
        self.self_k[:, :, start:end] = k
        self.self_v[:, :, start:end] = v
        return self.self_k[:, :, :end], self.self_v[:, :, :end]


@dataclass
class DecoderCache:
    """The decoder's cache: per layer keys/values, the positions of the `length` cached content entries,
    and the entries to make room for up front (`capacity`: the longest output, for a search)."""

    layers: list[LayerCache] = field(default_factory=list)
    positions: torch.Tensor | None = None  # (B, length) positions of the cached content entries
    capacity: int = 0

    @property
    def length(self) -> int:
        return 0 if self.positions is None else self.positions.shape[1]

    def reorder(self, self_rows: torch.Tensor, cross_rows: torch.Tensor | None = None) -> None:
        """Reorder in place: content keys/values by `self_rows` (a beam continues another beam), encoder
        keys/values only by `cross_rows` (sentences leaving the batch), since a sentence's rows share them.
        Only the filled entries are copied, into the front rows of the same buffers."""
        n, rows = self.length, self_rows.shape[0]
        if self.positions is not None:
            self.positions = self.positions.index_select(0, self_rows)
        for layer in self.layers:
            if layer.self_k is not None:
                k, v = (
                    layer.self_k[:, :, :n].index_select(0, self_rows),
                    layer.self_v[:, :, :n].index_select(0, self_rows),
                )
                layer.self_k, layer.self_v = layer.self_k[:rows], layer.self_v[:rows]
                layer.self_k[:, :, :n], layer.self_v[:, :, :n] = k, v
            if cross_rows is not None:
                layer.cross_k = layer.cross_k.index_select(0, cross_rows)
                layer.cross_v = layer.cross_v.index_select(0, cross_rows)

    def keep_entries(self, rows: torch.Tensor, index: torch.Tensor, drop_rows: bool) -> None:
        """Keep, for each kept row `rows` (A',), the content entries `index` (A', C') in place (a
        speculative round rolls back what the AR view rejected); with `drop_rows` the encoder
        keys/values also keep only `rows`."""
        n = self.length
        for layer in self.layers:
            _, heads, _, head_dim = layer.self_k.shape
            gather = index[:, None, :, None].expand(-1, heads, -1, head_dim)  # (A', heads, C', head_dim)
            k = layer.self_k[rows, :, :n].gather(2, gather)
            v = layer.self_v[rows, :, :n].gather(2, gather)
            layer.self_k, layer.self_v = layer.self_k[: rows.shape[0]], layer.self_v[: rows.shape[0]]
            layer.self_k[:, :, : index.shape[1]], layer.self_v[:, :, : index.shape[1]] = k, v
            if drop_rows:
                layer.cross_k, layer.cross_v = layer.cross_k[rows], layer.cross_v[rows]
        self.positions = self.positions[rows].gather(1, index)

    def encoder_only(self) -> DecoderCache:
        """The encoder keys/values alone: a later non-incremental pass (a Mask-Predict iteration)
        reuses them while recomputing all of its content rows."""
        return DecoderCache([LayerCache(cross_k=c.cross_k, cross_v=c.cross_v) for c in self.layers])


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

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, T, head_dim)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.k_proj(memory)), self.split_heads(self.v_proj(memory))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask) -> torch.Tensor:
        """x: (B, R, d) queries; k, v: (B, heads, C, head_dim); mask: who sees whom (model/attention.py)."""
        q = self.split_heads(self.q_proj(x))
        out = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        b, _, r, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, r, -1))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.activation = {"relu": F.relu, "gelu": F.gelu}[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation, cfg.activation_dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pre_norm = cfg.pre_norm

    def forward(self, x: torch.Tensor, visible: KeyPadding) -> torch.Tensor:
        if self.pre_norm:
            h = self.norm1(x)
            x = x + self.dropout(self.self_attn(h, *self.self_attn.project_kv(h), visible))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, *self.self_attn.project_kv(x), visible)))
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
        self.dropout = nn.Dropout(cfg.dropout)
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
        """x: (B, R, d) rows, the first `num_content` of them content; self_mask: the self-attention
        mask over the `cached` + num_content content entries (see JanusTransformer.self_attention_mask).
        With a cache, the new content keys/values are written after its `cached` entries (incremental
        decoding; `capacity`: the entries to make room for)."""
        h = self.norm1(x) if self.pre_norm else x
        k, v = self.self_attn.project_kv(h[:, :num_content])
        if cache is not None:
            k, v = cache.append(k, v, cached, capacity)
        a = self.dropout(self.self_attn(h, k, v, self_mask))
        x = x + a if self.pre_norm else self.norm1(x + a)

        if cache is not None and cache.cross_k is not None:
            ck, cv = cache.cross_k, cache.cross_v
        else:
            ck, cv = self.cross_attn.project_kv(enc.states)
            if cache is not None:
                cache.cross_k, cache.cross_v = ck, cv
        h = self.norm2(x) if self.pre_norm else x
        a = self.dropout(self.cross_attn(h, ck, cv, enc.key_padding()))
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


class JanusTransformer(nn.Module):
    """Encoder, two-stream decoder, tied embeddings/output projection, and a length classifier."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_id)
        nn.init.normal_(self.embed.weight, std=d**-0.5)
        with torch.no_grad():
            self.embed.weight[cfg.pad_id].zero_()
        # BART keeps rows 0, 1 unused (offset 2); a source_bos BOS, or a decoder start token before the
        # target's BOS, takes one position more than the data
        extra = int(cfg.source_bos or cfg.decoder_start_id is not None)
        table = cfg.max_positions + cfg.position_offset + extra
        if cfg.learned_positions:
            self.enc_positions: nn.Module = nn.Embedding(table, d)
            self.dec_positions: nn.Module = nn.Embedding(table, d)
            nn.init.normal_(self.enc_positions.weight, std=d**-0.5)
            nn.init.normal_(self.dec_positions.weight, std=d**-0.5)
        else:
            self.enc_positions = self.dec_positions = SinusoidalPositions(table, d)
        self.enc_embed_norm = nn.LayerNorm(d) if cfg.embedding_norm else nn.Identity()
        self.dec_embed_norm = nn.LayerNorm(d) if cfg.embedding_norm else nn.Identity()
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.encoder_norm = nn.LayerNorm(d) if cfg.pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d) if cfg.pre_norm else nn.Identity()
        self.relative_bias = (
            nn.Embedding(2 * cfg.relative_positions + 1, cfg.heads) if cfg.relative_positions > 0 else None
        )
        if self.relative_bias is not None:
            # start local: head h scores a key at distance k by -k / 2^h (ALiBi-like slopes), so the query
            # stream attends to its neighbours from the first update; the bias is learned from there
            distance = torch.arange(-cfg.relative_positions, cfg.relative_positions + 1).abs().float()
            slopes = 2.0 ** -torch.arange(cfg.heads).float()
            with torch.no_grad():
                self.relative_bias.weight.copy_(-distance[:, None] * slopes[None, :])
        lengths = cfg.max_target_length + 1  # classes 0 .. max_target_length
        if cfg.length_predictor == "ours":
            # the pooled source states (without back-propagating into them) and an embedding of the
            # source length, which pooled states cannot carry
            self.source_length_embed = nn.Embedding(cfg.max_positions + 1, d)
            self.length_head = nn.Linear(d, lengths)
        else:  # "release": one embedding row per length is the output weight of that class, no bias
            self.embed_length = nn.Embedding(lengths, d)
            nn.init.normal_(self.embed_length.weight, std=d**-0.5)
        self.dropout = nn.Dropout(cfg.dropout)
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        if not cfg.tie_output:
            self.output_projection = nn.Linear(d, cfg.vocab_size, bias=False)
            nn.init.normal_(self.output_projection.weight, std=d**-0.5)
        if cfg.logits_bias:  # not trained (as in BART), but saved with the weights
            self.register_buffer("final_logits_bias", torch.zeros(cfg.vocab_size))
        if cfg.init == "bert":
            self._bert_init()

    def _bert_init(self) -> None:
        """Every linear and embedding weight N(0, 0.02), biases 0, the padding row 0 (the authors'
        --apply-bert-init); LayerNorms and the relative-position bias keep their start."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding) and module is not self.relative_bias:
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.embed.weight[self.cfg.pad_id].zero_()

    # -------------------------------------------------------------------------------------- encoder
    def encode(self, src: torch.Tensor, padded: bool = True) -> Encoded:
        """src: (B, S) token ids + EOS, right-padded (with source_bos, BOS is put in front here).
        `padded`: False when the caller knows no source is padded (attention then needs no mask)."""
        if self.cfg.source_bos:
            src = torch.cat([src.new_full((src.shape[0], 1), self.cfg.bos_id), src], dim=1)
        valid = src != self.cfg.pad_id
        positions = torch.arange(src.shape[1], device=src.device)[None] + self.cfg.position_offset
        x = self.embed(src) * self.embed_scale + self.enc_positions(positions)
        x = self.dropout(self.enc_embed_norm(x))
        visible = KeyPadding(valid if padded else None)  # every row sees every real token
        for layer in self.encoder_layers:
            x = layer(x, visible)
        return Encoded(self.encoder_norm(x), valid, padded)

    def length_modules(self) -> list[nn.Module]:
        """The modules of the length classifier (only the length loss trains them)."""
        if self.cfg.length_predictor == "ours":
            return [self.length_head, self.source_length_embed]
        return [self.embed_length]

    def length_logits(self, enc: Encoded) -> torch.Tensor:
        """(B, max_target_length + 1): logits of the number of target tokens n = L - 2, from the mean of
        the encoder states over the real source tokens (`length_predictor`)."""
        w = enc.valid.to(enc.states.dtype)[:, :, None]
        source_length = enc.valid.sum(1).clamp(max=self.cfg.max_positions)  # source_bos can add one
        states = enc.states
        if self.cfg.length_predictor == "release":
            pooled = (states * w).sum(1) / source_length.clamp(min=1)[:, None].to(w.dtype)
            return F.linear(pooled, self.embed_length.weight)
        # Stop-gradient: the length loss through mean-pooled states pushes every encoder state the same
        # way; with it, the AR view reached 1.3 instead of 3.5 BLEU after 250 updates (BENCHMARKS.md).
        pooled = (states.detach() * w).sum(1) / source_length.clamp(min=1)[:, None].to(w.dtype)
        return self.length_head(pooled + self.source_length_embed(source_length))

    # -------------------------------------------------------------------------------------- decoder
    def decode(self, view: DecoderView, enc: Encoded, cache: DecoderCache | None = None) -> torch.Tensor:
        """Hidden states (B, R, d) of every row of `view`. With a cache, `view.visible` covers the
        cached content entries followed by the new ones, and the new content is appended."""
        positions = view.positions + self.cfg.position_offset
        x = self.embed(view.tokens) * self.embed_scale + self.dec_positions(positions)
        x = self.dropout(self.dec_embed_norm(x))
        content_positions = view.positions[:, : view.num_content]
        cached = 0
        if cache is not None:
            if not cache.layers:
                cache.layers.extend(LayerCache() for _ in self.decoder_layers)
            cached = cache.length
            if cache.positions is not None:
                content_positions = torch.cat([cache.positions, content_positions], dim=1)
            cache.positions = content_positions
        mask = self.self_attention_mask(view, content_positions)
        capacity = 0 if cache is None else cache.capacity
        for i, layer in enumerate(self.decoder_layers):
            layer_cache = None if cache is None else cache.layers[i]
            x = layer(x, view.num_content, mask, enc, layer_cache, cached, capacity)
        return self.decoder_norm(x)

    def self_attention_mask(self, view: DecoderView, content_positions: torch.Tensor) -> ViewMask:
        """The decoder self-attention mask, shared by every layer: the view's visibility, plus, with
        relative positions, a learned bias per head and clipped distance (key position - row position).

        The query stream carries no token, only [MASK] and a position, so it finds the tokens it needs
        (the previous one above all) through positions alone; with absolute positions that is slow to
        learn (MPNet uses relative positions for the same reason). BENCHMARKS.md has the measurement."""
        bias = None
        if self.relative_bias is not None:
            bias = RelativeBias(
                self.relative_bias.weight, self.cfg.relative_positions, view.positions, content_positions
            )
        return ViewMask(view.visible, bias, view.causal_blocks)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output projection (tied to the embeddings unless tie_output is off): (..., d) -> (..., vocab)."""
        weight = self.embed.weight if self.cfg.tie_output else self.output_projection.weight
        out = F.linear(hidden, weight)
        return out + self.final_logits_bias.to(out.dtype) if self.cfg.logits_bias else out

    # ------------------------------------------------------------------------------------- AR view
    def ar_view(self, tgt: torch.Tensor) -> DecoderView:
        """The teacher-forced AR view of targets `tgt` (B, T): with ar_stream "query" the JANUS view
        (content rows, then one query row per target position), with "content" a plain causal decoder.
        Either way its last T - 1 rows predict tgt[:, 1:] (see `ar_rows`)."""
        if self.cfg.ar_stream == "content":
            return content_only_ar_view(tgt, self.cfg.pad_id)
        return ar_view(tgt, self.cfg.pad_id, self.cfg.mask_id, ar_query_offset(self.cfg.ar_query_position))

    @staticmethod
    def ar_rows(view: DecoderView, hidden: torch.Tensor) -> torch.Tensor:
        """The rows of `hidden` (B, R, d) of an `ar_view` that predict tgt[:, 1:]: (B, T - 1, d). The
        query stream's rows follow the T - 1 content rows; a content-only view has no others."""
        return hidden[:, hidden.shape[1] - view.num_content :]

    def ar_step_view(self, last: torch.Tensor, positions: torch.Tensor) -> DecoderView:
        """One incremental AR step (with a cache): `last` (rows,) the token at positions[0] = t as one
        content row, and with the query stream [MASK] at t + 1 or t (`ar_query_position`), as in
        `ar_view`. `ar_rows(view, hidden)` is then the one row that predicts the token at t + 1."""
        rows = last.shape[0]
        t = positions[:1]
        if self.cfg.ar_stream == "content":
            return DecoderView(last[:, None], t.expand(rows, 1), None, 1)
        tokens = torch.stack([last, torch.full_like(last, self.cfg.mask_id)], dim=1)  # (rows, 2)
        query = t + ar_query_offset(self.cfg.ar_query_position)
        return DecoderView(tokens, torch.cat([t, query]).expand(rows, 2), None, 1)

    def ar_logits(self, tgt: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """(B, T - 1, V) teacher-forced P_AR logits of `tgt`, aligned with tgt[:, 1:], in one pass."""
        view = self.ar_view(tgt)
        return self.logits(self.ar_rows(view, self.decode(view, enc)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
