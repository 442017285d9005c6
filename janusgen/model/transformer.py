"""Transformer encoder and two-stream decoder (JANUS), readable top to bottom.

The decoder takes one tensor of rows: `num_content` content rows followed by query rows. Every layer
computes keys and values from the content rows only and lets each row attend to the content entries
its visibility mask allows (model/layout.py builds those masks). Content and query rows share every
weight, so one code path serves the AR view, the NAR/AUX view and plain causal decoding.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from janusgen.model.attention import KeyPadding, RelativeBias, ViewMask
from janusgen.model.cache import DecoderCache, LayerCache
from janusgen.model.config import ModelConfig
from janusgen.model.layers import DecoderLayer, Dropout, EncoderLayer, SinusoidalPositions
from janusgen.model.layout import DecoderView, ar_query_offset, ar_view, content_only_ar_view, verify_view

__all__ = ["DecoderCache", "Encoded", "JanusTransformer", "LayerCache", "SinusoidalPositions"]


@dataclass
class Encoded:
    states: torch.Tensor  # (B, S, d)
    valid: torch.Tensor  # (B, S) bool: True for real source tokens
    padded: bool = True  # False when no source is padded: attention to it then needs no mask

    def index_select(self, index: torch.Tensor) -> Encoded:
        return Encoded(self.states.index_select(0, index), self.valid.index_select(0, index), self.padded)

    def key_padding(self) -> KeyPadding:
        return KeyPadding(self.valid if self.padded else None)


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
        self.dropout = Dropout(cfg.dropout)
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.inference: dict[str, nn.Module] = {}  # modules made for decoding (model/inference.py)
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
        cached: int | torch.Tensor = 0
        if cache is not None and cache.static:  # one AR step: its content entry goes at its position
            cached = view.positions[0, :1]
            content_positions = cache.positions
            view = dataclasses.replace(view, visible=content_positions[:, None, :] <= cached)
        elif cache is not None:
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
        head = self.inference.get("output")
        if head is not None and not torch.is_grad_enabled():  # a copy made for decoding, possibly int8
            out = head(hidden)
        else:
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

    def verify_view(
        self,
        content: torch.Tensor,
        positions: torch.Tensor,
        visible: torch.Tensor,
        nar: DecoderView | None = None,
    ) -> DecoderView:
        """The AR view of a speculative verify pass (layout.verify_view) in this model's AR stream: the
        query stream's rows, or with ar_stream "content" the content rows themselves."""
        query = None if self.cfg.ar_stream == "content" else ar_query_offset(self.cfg.ar_query_position)
        return verify_view(content, positions, visible, self.cfg.mask_id, query, nar)

    def ar_logits(self, tgt: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """(B, T - 1, V) teacher-forced P_AR logits of `tgt`, aligned with tgt[:, 1:], in one pass."""
        view = self.ar_view(tgt)
        return self.logits(self.ar_rows(view, self.decode(view, enc)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
