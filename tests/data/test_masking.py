"""The authors' release masking (`release_spans`, `release_mask`): the exact span structure, the layout
of the spans against a one-sentence-at-a-time reference, <unk>, and the share masked against an
independent simulation of the release's procedure."""

from __future__ import annotations

import math

import pytest
import torch

from janusgen.data.masking import release_mask, release_spans

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def _totals(count: int, low: int = 2, high: int = 42, seed: int = 0) -> torch.Tensor:
    """(count,) sequence lengths L = n + 2, BOS and EOS included."""
    return torch.randint(low, high + 1, (count,), generator=torch.Generator().manual_seed(seed))


def _spans(total: torch.Tensor, lam: float, seed: int = 0, ratio: float = 0.7):
    width = int(total.max())
    return release_spans(total, width, ratio, lam, torch.Generator().manual_seed(seed))


def test_the_spans_add_up_to_exactly_the_budget_with_at_most_one_span_per_position():
    total = _totals(3000)
    starts, lengths, kept = _spans(total, 2.0)
    budget = torch.ceil(0.7 * total.float()).long()
    count = kept.sum(dim=1)
    # a row's spans are its first `count` columns, at most L of them, at distinct positions among the L
    assert torch.equal(kept, torch.arange(kept.shape[1])[None] < count[:, None])
    assert (count >= 1).all() and (count <= total).all()
    assert ((starts < total[:, None]) | ~kept).all()
    for row in range(50):
        row_starts = starts[row, : count[row]].tolist()
        assert len(set(row_starts)) == len(row_starts)
    # exactly m = ceil(0.7 L) in all, none negative, nothing past the spans
    assert torch.equal(lengths.sum(dim=1), budget)
    assert (lengths >= 0).all() and (lengths[~kept] == 0).all()
    # the spans stop at the first that reaches m: the ones before the last fall short of it
    before_last = lengths.sum(dim=1) - lengths.gather(1, (count - 1)[:, None]).squeeze(1)
    assert (before_last < budget).all()


def test_zero_length_spans_are_drawn_and_kept():
    """Poisson(2) gives 0 one time in 7.4 (e^-2; a little more often among the spans before the last,
    which stopped short of m): such a span takes a start and masks nothing. Forbidding them (lengths of
    at least 1) would make the spans fewer and the masks different."""
    total = _totals(3000)
    _, lengths, kept = _spans(total, 2.0)
    inner = kept.clone()
    inner[torch.arange(len(total)), kept.sum(dim=1) - 1] = False  # the last span is cut or stretched
    zero_share = float(((lengths == 0) & inner).sum() / inner.sum())
    assert math.exp(-2.0) - 0.01 < zero_share < 0.2


def test_when_l_spans_fall_short_the_last_one_is_stretched_to_fill_the_budget():
    """With lambda 0.05 most draws are 0, so L spans seldom add up to m: the L-th span takes the rest."""
    total = torch.full((400,), 10)  # L = 10, m = 7
    _, lengths, kept = _spans(total, 0.05)
    short = kept.sum(dim=1) == 10
    assert short.float().mean() > 0.9, "the test lost its point: most rows should use all L spans"
    assert (lengths[short, 9] >= 7 - lengths[short, :9].sum(dim=1)).all()
    assert torch.equal(lengths[short, 9], 7 - lengths[short, :9].sum(dim=1))
    assert (lengths[short, 9] >= 5).float().mean() > 0.8  # far above what Poisson(0.05) draws
    assert torch.equal(lengths.sum(dim=1), torch.full((400,), 7))


def _reference_mask(tgt: torch.Tensor, starts, lengths, kept, unk_id: int | None) -> torch.Tensor:
    """One sentence at a time: each span [start, start + length) masks its positions, except that a
    span running past the end masks its start only; then BOS, EOS and padding are unmasked and every
    <unk> among the inner tokens is masked."""
    mask = torch.zeros_like(tgt, dtype=torch.bool)
    for b in range(tgt.shape[0]):
        total = int((tgt[b] != PAD).sum())
        for j in range(int(kept[b].sum())):
            start, length = int(starts[b, j]), int(lengths[b, j])
            if start + length > total:
                length = min(length, 1)
            mask[b, start : start + length] = True
        mask[b, 0] = False
        mask[b, total - 1 :] = False
        for p in range(1, total - 1):
            if unk_id is not None and int(tgt[b, p]) == unk_id:
                mask[b, p] = True
    return mask


@pytest.mark.parametrize("unk_id", [None, UNK])
def test_release_mask_lays_out_its_spans_as_the_slow_reference(unk_id):
    total = _totals(300, high=30, seed=1)
    g = torch.Generator().manual_seed(1)
    width = int(total.max())
    tgt = torch.full((300, width), PAD)
    for b, length in enumerate(total.tolist()):
        tgt[b, :length] = torch.randint(UNK, 40, (length,), generator=g)  # some <unk> among the tokens
        tgt[b, 0], tgt[b, length - 1] = BOS, EOS
    assert (tgt == UNK).sum() > 50
    mask = release_mask(tgt, PAD, 0.7, 2.0, torch.Generator().manual_seed(5), unk_id)
    spans = release_spans(total, width, 0.7, 2.0, torch.Generator().manual_seed(5))  # the same draws
    assert torch.equal(mask, _reference_mask(tgt, *spans, unk_id))


def test_every_unk_is_masked_and_never_the_ends():
    tgt = torch.tensor(
        [[BOS, 7, UNK, 8, 9, UNK, 10, 11, EOS, PAD], [BOS, UNK, UNK, EOS, PAD, PAD, PAD, PAD, PAD, PAD]]
    )
    g = torch.Generator().manual_seed(0)
    left_alone = 0
    for _ in range(200):
        mask = release_mask(tgt, PAD, 0.7, 2.0, g, unk_id=UNK)
        assert mask[tgt == UNK].all()
        assert not mask[:, 0].any() and not mask[0, 8:].any() and not mask[1, 3:].any()
        left_alone += int((~release_mask(tgt, PAD, 0.7, 2.0, g)[tgt == UNK]).sum())
    assert left_alone > 0, "without unk_id an <unk> is masked only when a span covers it"


# Mean share of the inner tokens masked at ratio 0.7, lambda 2, from an independent simulation of the
# release's procedure (Python's random and numpy's Poisson, 200,000 sentences per length, standard error
# below 0.0007): draw Poisson(2) lengths until they reach m = ceil(0.7 (n + 2)) or L = n + 2 spans, cut
# or stretch the last to make m, start them at distinct random positions, a span past the end masks its
# start only, unmask BOS/EOS. Also the share of 3-token sentences left unmasked (0.050).
RELEASE_SHARE = {3: 0.6588, 8: 0.5739, 15: 0.5663, 40: 0.5619}


@pytest.mark.parametrize("n", sorted(RELEASE_SHARE))
def test_the_share_masked_is_the_release_procedures(n):
    """40,000 sentences give a standard error of at most 0.0015 (n = 3): a 0.006 band is 4 of them, and
    a change of the procedure (no stretching, no zero-length spans, an off-by-one bound) moves it more."""
    g = torch.Generator().manual_seed(n)
    mask = release_mask(torch.full((40_000, n + 2), 7), PAD, 0.7, 2.0, g)
    share = mask[:, 1:-1].float().mean(dim=1)
    assert abs(float(share.mean()) - RELEASE_SHARE[n]) < 0.006
    if n == 3:
        assert abs(float((share == 0).float().mean()) - 0.050) < 0.006
