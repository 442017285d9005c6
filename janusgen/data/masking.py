"""Which target positions to mask, for a whole batch at once (no loop over sentences).

The distributions choose among the inner positions 1 .. n of `tgt` = BOS s_1 .. s_n EOS (pad):
- `span_mask`: JANUS default, a fixed ratio of the inner tokens in spans with Poisson(lam) lengths;
- `release_mask`: what the authors' release does (spans over the whole sequence, overlapping, ends
  unmasked afterwards: fewer inner tokens masked, a varying number; every <unk> masked too);
- `uniform_mask`: CMLM / Mask-Predict, k ~ Uniform{1..n} positions chosen uniformly;
- `suffix_mask`: everything after a random cut, the placeholders a speculative draft fills (mixed into
  the others by `with_suffixes`).

And in what order: `masked_ranks` (the prediction order of the masked tokens, which the views follow),
`lowest_scores_mask` (the tokens Mask-Predict re-masks), both through the one ranking helper `row_ranks`.
"""

from __future__ import annotations

import math

import torch


def inner_lengths(tgt: torch.Tensor, pad_id: int) -> torch.Tensor:
    """n per sentence: tokens other than BOS, EOS and padding."""
    return (tgt != pad_id).sum(dim=1) - 2


def uniform_mask(tgt: torch.Tensor, pad_id: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """CMLM masking: k ~ Uniform{1..n}, then k inner positions uniformly at random. (B, T) bool."""
    b, t = tgt.shape
    n = inner_lengths(tgt, pad_id)
    k = (torch.rand(b, generator=generator) * n.cpu().float()).long().to(tgt.device) + 1
    k = torch.minimum(k, n)
    return row_ranks(_inner_scores(tgt, n, generator)) < k[:, None]


def span_mask(
    tgt: torch.Tensor,
    pad_id: int,
    ratio: float = 0.7,
    span_lambda: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask k = round(ratio * n) (at least 1) inner tokens in spans whose lengths follow
    Poisson(span_lambda) (at least 1), BART style. (B, T) bool.

    The k masked tokens are laid out as spans interleaved with the u = n - k observed tokens: span j
    goes into a slot s_j in 0 .. u (before observed token s_j), slots sorted. The q-th masked token
    (0-based, counting across spans) then sits at inner offset q + s_{span(q)}; spans that share a slot
    simply merge into a longer one.
    """
    b, t = tgt.shape
    device = tgt.device
    n = inner_lengths(tgt, pad_id).cpu()
    k = torch.where(n > 0, torch.clamp((ratio * n.float()).round().long(), min=1), torch.zeros_like(n))
    k = torch.minimum(k, n)
    kmax = int(k.max()) if b else 0
    if kmax == 0:
        return torch.zeros_like(tgt, dtype=torch.bool)
    lam = torch.full((b, kmax), float(span_lambda))
    lengths = torch.poisson(lam, generator=generator).long().clamp(min=1)
    ends = lengths.cumsum(dim=1).clamp(max=k[:, None])  # cumulative span ends, capped at k
    used = torch.cat([torch.ones(b, 1, dtype=torch.bool), ends[:, :-1] < k[:, None]], dim=1)
    u = n - k
    slots = (torch.rand(b, kmax, generator=generator) * (u[:, None] + 1).float()).long()
    slots = torch.where(used, slots, u[:, None] + 1).sort(dim=1).values
    q = torch.arange(kmax).expand(b, -1)
    span_of_q = torch.searchsorted(ends, q.contiguous(), right=True).clamp(max=kmax - 1)
    offset = q + slots.gather(1, span_of_q)  # inner offset 0 .. n-1
    valid = q < k[:, None]
    mask = torch.zeros(b, t + 1, dtype=torch.bool)
    cols = torch.where(valid, offset + 1, torch.full_like(offset, t))  # + 1 skips BOS; t is a dump column
    mask.scatter_(1, cols, True)
    return mask[:, :t].to(device)


def release_spans(
    total: torch.Tensor,
    width: int,
    ratio: float = 0.7,
    span_lambda: float = 2.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The spans of the authors' release masking for sequences of `total` (B,) positions (L, BOS and EOS
    included) in rows of `width` >= max(L) columns: (starts, lengths, kept), each (B, width), where
    `kept` marks a row's spans (its first columns) and `lengths` is 0 past them.

    Each row aims at m = ceil(ratio * L) positions. Span lengths are drawn from Poisson(span_lambda)
    (zero allowed: such a span masks nothing) until they add up to m, and at most L spans are kept; the
    last kept span is cut so that the lengths add up to exactly m, or, when L spans fall short of m,
    stretched to fill it. The spans start at distinct random positions among the L (a random
    permutation); `release_mask` then lays them out.
    """
    b = total.shape[0]
    budget = torch.ceil(ratio * total.float()).long()[:, None]  # (B, 1) m
    lengths = torch.poisson(torch.full((b, width), float(span_lambda)), generator=generator).long()
    j = torch.arange(width)[None]  # (1, W)
    before = lengths.cumsum(dim=1) - lengths  # what the earlier spans add up to
    # kept: the spans up to the first whose end reaches m (no earlier one reached it), at most L of them
    kept = (before < budget) & (j < total[:, None])
    last = kept.long().sum(dim=1, keepdim=True) - 1  # (B, 1) index of the last kept span
    # the last kept span takes what the others leave of m: cut when they would overshoot, stretched when
    # L spans fall short
    lengths = torch.where(j == last, budget - before, lengths)
    lengths = lengths.masked_fill(~kept, 0)
    # distinct random starts among the L positions: the ranks of random scores, padding last
    scores = torch.rand(b, width, generator=generator).masked_fill(j >= total[:, None], 2.0)
    starts = scores.argsort(dim=1)
    return starts, lengths, kept


def release_mask(
    tgt: torch.Tensor,
    pad_id: int,
    ratio: float = 0.7,
    span_lambda: float = 2.0,
    generator: torch.Generator | None = None,
    unk_id: int | None = None,
) -> torch.Tensor:
    """The masking of the authors' release, for a whole batch. (B, T) bool.

    Over the whole sequence of L = n + 2 positions (BOS and EOS included) it lays out `release_spans`
    (m = ceil(ratio * L) positions in all, in Poisson(span_lambda) spans at distinct random starts): a
    span that would run past the end masks its start only, spans may overlap, and BOS and EOS are
    unmasked at the end. Overlaps, zero-length spans and the two ends leave about 0.56 of the inner
    tokens masked at ratio 0.7, and sometimes none of a short sentence. Every `unk_id` token of the
    target is masked too: the release finds its masked positions by comparing with <unk>, its mask
    token, so a real <unk> counts as masked.
    """
    b, t = tgt.shape
    device = tgt.device
    if b == 0:
        return torch.zeros_like(tgt, dtype=torch.bool)
    total = (tgt != pad_id).sum(dim=1).cpu()  # L per sentence
    starts, lengths, _ = release_spans(total, t, ratio, span_lambda, generator)
    # a span running past the end masks only its start
    lengths = torch.where(starts + lengths > total[:, None], lengths.clamp(max=1), lengths)
    # union of [start, start + length): +1 at each start, -1 at each end, a running sum > 0 is covered
    used = (lengths > 0).long()
    cover = torch.zeros(b, t + 1, dtype=torch.long)
    cover.scatter_add_(1, starts, used)
    cover.scatter_add_(1, (starts + lengths).clamp(max=t), -used)
    mask = cover.cumsum(dim=1)[:, :t] > 0
    pos = torch.arange(t)[None]
    inner = (pos >= 1) & (pos < total[:, None] - 1)  # BOS, EOS and padding unmasked
    mask = mask.to(device) & inner.to(device)
    if unk_id is not None:
        mask |= (tgt == unk_id) & inner.to(device)
    return mask


def suffix_mask(tgt: torch.Tensor, pad_id: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mask the inner positions c+1 .. n after a cut c ~ Uniform{0..n-1}: a given prefix to continue, as
    a speculative draft does (decoding.speculative). (B, T) bool; sentences with n = 0 mask nothing."""
    b, t = tgt.shape
    n = inner_lengths(tgt, pad_id)
    cut = (torch.rand(b, generator=generator) * n.cpu().float()).long().to(tgt.device)  # 0 .. n-1
    pos = torch.arange(t, device=tgt.device)[None]
    return (pos > cut[:, None]) & (pos <= n[:, None])


def with_suffixes(
    mask: torch.Tensor,
    tgt: torch.Tensor,
    pad_id: int,
    fraction: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`mask` with a random `fraction` of its sentences masked by `suffix_mask` instead."""
    if fraction <= 0:
        return mask
    chosen = (torch.rand(tgt.shape[0], generator=generator) < fraction).to(tgt.device)
    return torch.where(chosen[:, None], suffix_mask(tgt, pad_id, generator), mask)


def _inner_scores(tgt: torch.Tensor, n: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Random scores in [0, 1) at inner positions, 2 elsewhere (so they are never among the lowest)."""
    b, t = tgt.shape
    scores = torch.rand(b, t, generator=generator).to(tgt.device)
    pos = torch.arange(t, device=tgt.device)[None]
    inner = (pos >= 1) & (pos <= n[:, None])
    return scores.masked_fill(~inner, 2.0)


# ------------------------------------------------------------------------------------------ ordering


def row_ranks(keys: torch.Tensor, stable: bool = False) -> torch.Tensor:
    """(N, L) the rank of each entry within its row, 0 for the lowest key: one sort and one scatter (the
    inverse of the sorting permutation), no loop. With `stable`, equal keys rank left to right."""
    order = keys.argsort(dim=1, stable=stable)  # (N, L) entries from lowest to highest key
    ranks = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


def lowest_scores_mask(scores: torch.Tensor, allowed: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(N, L) bool: in each row i, the counts[i] `allowed` entries with the lowest scores (ties: the
    leftmost first). Mask-Predict re-masks its least confident tokens with this."""
    key = scores.masked_fill(~allowed, math.inf)
    return row_ranks(key, stable=True) < counts[:, None]


def masked_ranks(
    masked: torch.Tensor, random_order: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rank j of each masked position in the prediction order (left to right by default, or a random
    permutation per sentence, XLNet style); -1 where not masked. The views (model.layout) place the
    ground truth G_j and the query Q_j of the masked tokens in this order."""
    if random_order:
        keys = torch.rand(masked.shape, generator=generator, device="cpu").to(masked.device)
        keys = keys.masked_fill(~masked, 2.0)
        rank = row_ranks(keys)
    else:
        rank = masked.long().cumsum(dim=1) - 1
    return rank.masked_fill(~masked, -1)
