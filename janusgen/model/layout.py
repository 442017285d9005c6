"""Decoder inputs for the two views of JANUS, built for a whole batch with tensor operations.

The decoder runs over one sequence of "rows": the content stream first (`num_content` rows), then the
query stream. Keys and values come from the content rows only, so a view is fully described by the
row tokens, their positions and a boolean visibility matrix rows x content (True = may attend).
See docs/method.md, "The views": the AR view is causal; the NAR/AUX view holds the observed tokens (O), the
[MASK] placeholders (P) and the ground truth of the masked tokens (G) in the content stream, and one
query row per masked token.

Visibility is computed from two per-entry tensors compared by broadcasting:
  segment: O, P, G (content entries), Q (query rows), PAD
  rank:    j for the j-th masked token (P_j, G_j, Q_j), unused otherwise
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from janusgen.data.masking import masked_ranks

# segment codes
O, P, G, Q, PAD = 0, 1, 2, 3, 4


@dataclass
class DecoderView:
    tokens: torch.Tensor  # (B, R) content rows then query rows
    positions: torch.Tensor  # (B, R)
    # (B, R, C) bool, or broadcastable (B, 1, C): row r may attend to content entry c; None: every entry
    visible: torch.Tensor | None
    num_content: int  # C
    # > 0 when the rows are this many blocks of C rows in which row i sees the entries <= i, padding aside
    # (the AR view: the content stream and the query stream): attention may then use a causal kernel
    causal_blocks: int = field(default=0, kw_only=True)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DecoderView:
        """The same view with every tensor on `device` (a view built on the CPU by the data loader)."""
        moved = {
            f.name: value.to(device, non_blocking=non_blocking) if torch.is_tensor(value) else value
            for f in dataclasses.fields(self)
            for value in (getattr(self, f.name),)
        }
        return dataclasses.replace(self, **moved)

    def pin_memory(self) -> DecoderView:
        """The same view in page-locked memory, so that `to(cuda, non_blocking=True)` overlaps compute."""
        pinned = {
            f.name: value.pin_memory() if torch.is_tensor(value) else value
            for f in dataclasses.fields(self)
            for value in (getattr(self, f.name),)
        }
        return dataclasses.replace(self, **pinned)


@dataclass
class MaskedView(DecoderView):
    masked_positions: torch.Tensor  # (B, K) target position m_j of the j-th masked token (0 where unused)
    masked_targets: torch.Tensor  # (B, K) s_{m_j}, pad_id where unused
    masked_valid: torch.Tensor  # (B, K) bool: j < k_b

    @property
    def placeholder_rows(self) -> torch.Tensor:
        """Row index of P_j: the placeholder sits at its own position in the content stream."""
        return self.masked_positions


# Where the AR query row that predicts s_{i+1} sits (ModelConfig.ar_query_position), as an offset from
# i: "next" (ours) at i + 1, the position it predicts; "same" (the authors' release) at i, the position
# of content row i, whose visibility it shares. Every builder of AR query rows reads it from here.
AR_QUERY_OFFSETS = {"next": 1, "same": 0}


def ar_query_offset(ar_query_position: str) -> int:
    """The position of the AR query row predicting s_{i+1}, minus i (see AR_QUERY_OFFSETS)."""
    return AR_QUERY_OFFSETS[ar_query_position]


def decoder_sequence(tgt: torch.Tensor, start_id: int | None) -> torch.Tensor:
    """What the decoder reads for targets `tgt` (B, T) = BOS s_1 .. s_n EOS: `tgt` itself, or, with a
    decoder start token `start_id` (ModelConfig.decoder_start_id: a BART's </s>), (B, T + 1) with it in
    front, every target token one position further. The start token is never masked or predicted; BOS
    is then predicted (or forced) like the tokens after it."""
    if start_id is None:
        return tgt
    return torch.cat([tgt.new_full((tgt.shape[0], 1), start_id), tgt], dim=1)


def ar_view(tgt: torch.Tensor, pad_id: int, mask_id: int, query_offset: int = 1) -> DecoderView:
    """AR view of targets `tgt` (B, T) = BOS s_1 .. s_n EOS, right-padded.

    Content: s_0 .. s_{T-2} at positions 0 .. T-2, causal. Query row i: [MASK] at position
    i + `query_offset` (1: the position it predicts; 0: its content row's), sees content 0 .. i, and
    predicts s_{i+1}. The logits of the query rows line up with tgt[:, 1:].
    """
    b, t = tgt.shape
    content = tgt[:, :-1]
    n = t - 1
    pos = torch.arange(n, device=tgt.device)
    causal = pos[None, :] <= pos[:, None]  # (n, n): row i sees content <= i
    valid_key = content != pad_id  # (B, n)
    visible = causal[None] & valid_key[:, None, :]
    # a padded row still needs one visible key (BOS) so attention stays finite
    visible[:, :, 0] = True
    tokens = torch.cat([content, torch.full_like(content, mask_id)], dim=1)
    positions = torch.cat([pos, pos + query_offset])[None].expand(b, -1)
    return DecoderView(tokens, positions, torch.cat([visible, visible], dim=1), n, causal_blocks=2)


def content_only_ar_view(tgt: torch.Tensor, pad_id: int) -> DecoderView:
    """A standard causal decoder (no query stream): content row i predicts s_{i+1}. Used to check that
    converted pre-trained decoders reproduce their original logits."""
    b, t = tgt.shape
    content = tgt[:, :-1]
    pos = torch.arange(t - 1, device=tgt.device)
    visible = (pos[None, :] <= pos[:, None])[None] & (content != pad_id)[:, None, :]
    visible[:, :, 0] = True
    return DecoderView(content, pos[None].expand(b, -1), visible, t - 1, causal_blocks=1)


def masked_view(
    tgt: torch.Tensor,
    masked: torch.Tensor,
    pad_id: int,
    mask_id: int,
    rank: torch.Tensor | None = None,
    query_stream: bool = True,
) -> MaskedView:
    """NAR/AUX view of targets `tgt` (B, T) with masked set `masked` (B, T) bool (never BOS/EOS/pad).

    Content rows 0 .. T-1: the target with [MASK] at masked positions (O and P parts, at their own
    positions); content rows T .. T+K-1: G_j = s_{m_j} at position m_j. Query rows: [MASK] at m_j.
    Without `query_stream` (a CMLM, which reads only P_NAR) the view is the O and P rows alone: they
    never see G, so their outputs are the same and the decoder runs over T rows instead of T + 2K.
    """
    b, t = tgt.shape
    device = tgt.device
    if rank is None:
        rank = masked_ranks(masked)
    counts = masked.sum(dim=1)
    k = int(counts.max()) if b else 0
    j = torch.arange(k, device=device)
    masked_valid = j[None, :] < counts[:, None]  # (B, K)

    # position of the j-th masked token: sort positions by rank, unmasked ones last
    order_key = torch.where(masked, rank, torch.full_like(rank, t))
    by_rank = order_key.argsort(dim=1, stable=True)[:, :k]  # (B, K)
    masked_positions = torch.where(masked_valid, by_rank, torch.zeros_like(by_rank))
    masked_targets = torch.where(masked_valid, tgt.gather(1, by_rank), torch.full_like(by_rank, pad_id))

    observed_part = tgt.masked_fill(masked, mask_id)
    first_seg = torch.where(masked, torch.full_like(rank, P), torch.full_like(rank, O))
    first_seg = first_seg.masked_fill(tgt == pad_id, PAD)
    if query_stream:
        tokens = torch.cat([observed_part, masked_targets, torch.full_like(masked_targets, mask_id)], dim=1)
        positions = torch.cat(
            [torch.arange(t, device=device).expand(b, -1), masked_positions, masked_positions], dim=1
        )
        # per-entry segment and rank for the content part (B, C) and all rows (B, R)
        g_seg = torch.where(masked_valid, torch.full_like(by_rank, G), torch.full_like(by_rank, PAD))
        q_seg = torch.where(masked_valid, torch.full_like(by_rank, Q), torch.full_like(by_rank, PAD))
        jj = j.expand(b, -1)
        col_seg = torch.cat([first_seg, g_seg], dim=1)
        col_rank = torch.cat([rank, jj], dim=1)
        row_seg = torch.cat([col_seg, q_seg], dim=1)
        row_rank = torch.cat([col_rank, jj], dim=1)
    else:  # the O and P rows alone, which see only each other
        tokens, positions = observed_part, torch.arange(t, device=device).expand(b, -1)
        col_seg = row_seg = first_seg
        col_rank = row_rank = rank
        k = 0

    rs, rr = row_seg[:, :, None], row_rank[:, :, None]
    cs, cr = col_seg[:, None, :], col_rank[:, None, :]
    sees_o = cs == O
    sees_p = (cs == P) & ((rs == O) | (rs == P) | ((rs == G) & (cr > rr)) | ((rs == Q) & (cr >= rr)))
    sees_g = (cs == G) & (((rs == G) & (cr <= rr)) | ((rs == Q) & (cr < rr)))
    visible = sees_o | sees_p | sees_g
    # padded rows attend to the observed tokens only, so that attention stays finite
    visible = visible | ((rs == PAD) & sees_o)
    return MaskedView(tokens, positions, visible, t + k, masked_positions, masked_targets, masked_valid)


# ----------------------------------------------------------------------------------- decoding views


def nar_view(tgt: torch.Tensor, pad_id: int) -> DecoderView:
    """Content-stream-only view of `tgt` (B, L) (BOS, tokens or [MASK], EOS, padding): every row sees
    every real entry, so the output at a [MASK] is P_NAR. Same visibility as the O/P part of
    `masked_view`, without the G part and the query stream, which inference does not need."""
    b, length = tgt.shape
    positions = torch.arange(length, device=tgt.device).expand(b, length)
    visible = (tgt != pad_id)[:, None, :]  # (B, 1, L): broadcast over rows
    return DecoderView(tgt, positions, visible, length)


def draft_input(
    seq: torch.Tensor, t: torch.Tensor, n: torch.Tensor, pad_id: int, mask_id: int, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The NAR view's input of a speculative draft for sentences with prefixes `seq` (D, .) up to `t`
    (D,) and last draft position `n` (D,): s_0 .. s_t, [MASK] at t+1 .. n, EOS at n+1, padding (read it
    with `nar_view`). Also the placeholders (D, W)."""
    width = int(n.max()) + 2
    pos = torch.arange(width, device=seq.device)[None]  # (1, W)
    placeholder = (pos > t[:, None]) & (pos <= n[:, None])  # (D, W)
    tokens = torch.where(pos <= t[:, None], seq[:, :width], pad_id)
    tokens = tokens.masked_fill(placeholder, mask_id).masked_fill(pos == n[:, None] + 1, eos_id)
    return tokens, placeholder


def verify_view(
    content: torch.Tensor,
    positions: torch.Tensor,
    visible: torch.Tensor,
    mask_id: int,
    query_offset: int | None,
    nar: DecoderView | None = None,
) -> DecoderView:
    """The AR view of a speculative verify pass over a content cache of C entries: content rows `content`
    (A, R) at `positions` (A, R), seeing `visible` (A, R, C + R) of the cache and of themselves; with a
    query stream (`query_offset`: see `ar_query_offset`; None: the content rows themselves predict, a
    plain causal decoder) one [MASK] row per content row at its position + offset, seeing what its
    content row sees. `nar`: the rows of a NAR view (`nar_view`) carried in the same pass after the AR
    content rows, seeing only each other while the AR rows never see them (fused drafting).

    Rows: content (R), then nar's (W), then the query rows (R): `verify_rows` picks the ones that
    predict."""
    a, r = content.shape
    tokens, rows_pos, rows_visible = content, positions, visible
    if nar is not None:
        w = nar.tokens.shape[1]
        cached = visible.shape[2] - r
        visible = torch.cat([visible, visible.new_zeros(a, r, w)], dim=2)  # (A, R, C + R + W)
        nar_visible = torch.cat([visible.new_zeros(a, w, cached + r), nar.visible.expand(a, w, w)], dim=2)
        tokens = torch.cat([content, nar.tokens], dim=1)
        rows_pos = torch.cat([positions, nar.positions], dim=1)
        rows_visible = torch.cat([visible, nar_visible], dim=1)
    num_content = tokens.shape[1]
    if query_offset is None:
        return DecoderView(tokens, rows_pos, rows_visible, num_content)
    return DecoderView(
        torch.cat([tokens, torch.full_like(content, mask_id)], dim=1),  # (A, 2R + W)
        torch.cat([rows_pos, positions + query_offset], dim=1),
        torch.cat([rows_visible, visible], dim=1),  # a query row sees what its content row sees
        num_content,
    )


def verify_rows(view: DecoderView, hidden: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of `hidden` (A, rows, d) of a `verify_view` with `r` AR content rows: the R that give P_AR
    after each content row, and the NAR rows (A, W, d; W = 0 without them)."""
    if hidden.shape[1] == view.num_content:  # no query stream: the content rows predict
        return hidden[:, :r], hidden[:, r : view.num_content]
    return hidden[:, view.num_content :], hidden[:, r : view.num_content]
