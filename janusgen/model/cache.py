"""The decoder's key/value cache for incremental decoding: per layer, the content self-attention's keys
and values in a buffer filled in place (no copy of the whole per step) and the encoder's, computed once.

A static cache (`DecoderCache.static`) keeps every tensor at one shape for a whole search, as a compiled
step needs (decoding/stepper.py): entry i holds position i, the step writes its entry at its position
and attends to all of them with a mask, and a reorder fills the first rows of full-size buffers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LayerCache:
    """Keys/values of one decoder layer: the content self-attention's, in a buffer of `capacity` entries
    of which the first `DecoderCache.length` are filled (no copy of the whole per step), and the
    encoder's (fixed)."""

    self_k: torch.Tensor | None = None  # (B, heads, capacity, head_dim)
    self_v: torch.Tensor | None = None
    cross_k: torch.Tensor | None = None  # (B, heads, S, head_dim)
    cross_v: torch.Tensor | None = None
    # a second pair of buffers that a beam reorder writes into and swaps with self_k / self_v: one copy
    # per step instead of a gather into a temporary and a copy back
    spare_k: torch.Tensor | None = None
    spare_v: torch.Tensor | None = None

    def append(
        self, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor, capacity: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new entries k, v (B, heads, n, head_dim) at `start`; the filled keys and values.
        A static cache's `start` is a (1,) tensor, and the whole buffers come back (masked by the caller)."""
        if isinstance(start, torch.Tensor):
            self.self_k.index_copy_(2, start, k)
            self.self_v.index_copy_(2, start, v)
            return self.self_k, self.self_v
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
    static: bool = False  # entry i holds position i; `positions` is (1, capacity): 0 .. capacity - 1

    @property
    def length(self) -> int:
        return 0 if self.positions is None else self.positions.shape[1]

    def reorder(self, self_rows: torch.Tensor, cross_rows: torch.Tensor | None = None) -> None:
        """Reorder in place: content keys/values by `self_rows` (a beam continues another beam), encoder
        keys/values only by `cross_rows` (sentences leaving the batch), since a sentence's rows share them.
        Only the filled entries are copied, into the spare buffers, which then become the cache; a static
        cache copies into the first rows of full-size buffers (the rows after them are left over)."""
        n, rows = self.length, self_rows.shape[0]
        if self.positions is not None and not self.static:
            self.positions = self.positions.index_select(0, self_rows)
        for layer in self.layers:
            if layer.self_k is not None:
                spare = layer.spare_k
                if spare is None or spare.shape[0] < rows or spare.shape[2] != layer.self_k.shape[2]:
                    layer.spare_k, layer.spare_v = (
                        torch.empty_like(layer.self_k),
                        torch.empty_like(layer.self_v),
                    )
                new_k, new_v = layer.spare_k[:rows], layer.spare_v[:rows]
                torch.index_select(layer.self_k[:, :, :n], 0, self_rows, out=new_k[:, :, :n])
                torch.index_select(layer.self_v[:, :, :n], 0, self_rows, out=new_v[:, :, :n])
                if self.static:
                    new_k, new_v = layer.spare_k, layer.spare_v
                layer.spare_k, layer.spare_v = layer.self_k, layer.self_v
                layer.self_k, layer.self_v = new_k, new_v
            if cross_rows is not None and self.static:
                layer.cross_k[: cross_rows.shape[0]] = layer.cross_k.index_select(0, cross_rows)
                layer.cross_v[: cross_rows.shape[0]] = layer.cross_v.index_select(0, cross_rows)
            elif cross_rows is not None:
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
