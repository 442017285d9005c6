"""The views of docs/method.md, checked against a slow reference and by perturbing the model's inputs."""

import dataclasses

import pytest
import torch

from janusgen.data.masking import masked_ranks, span_mask
from janusgen.model.layout import ar_view, masked_view
from janusgen.model.transformer import JanusTransformer
from janusgen.presets import model_preset

PAD, BOS, EOS, MASK = 0, 2, 3, 4


def _targets(lengths, seed=0, vocab=40):
    """BOS s_1..s_n EOS, right-padded."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths) + 2
    tgt = torch.full((len(lengths), t), PAD)
    for b, n in enumerate(lengths):
        tgt[b, 0] = BOS
        tgt[b, 1 : n + 1] = torch.randint(5, vocab, (n,), generator=g)
        tgt[b, n + 1] = EOS
    return tgt


def _model(layers=2, vocab=40, seed=0):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(model_preset("tiny"), vocab_size=vocab, decoder_layers=layers)
    model = JanusTransformer(cfg).eval()
    torch.nn.init.normal_(model.relative_bias.weight)  # a non-zero position bias must not open any mask
    return model


def _reference_visibility(tgt_row, masked_row, order):
    """Literal transcription of the spec for one sentence: returns {row name: set of content names}.
    order: masked positions m_1..m_k in prediction order."""
    length = int((tgt_row != PAD).sum())
    observed = [("O", q) for q in range(length) if not masked_row[q]]
    k = len(order)
    vis = {}
    for q in range(length):
        part = "P" if masked_row[q] else "O"
        vis[(part, q)] = set(observed) | {("P", m) for m in order}
    for j in range(k):
        vis[("G", j)] = (
            set(observed) | {("G", i) for i in range(j + 1)} | {("P", order[i]) for i in range(j + 1, k)}
        )
        vis[("Q", j)] = set(observed) | {("G", i) for i in range(j)} | {("P", order[i]) for i in range(j, k)}
    return vis


def _names(view, b, length, k_b):
    """Name of each row / content entry of sentence b in `view`, or None for padding."""
    c = view.num_content
    k = view.masked_positions.shape[1]
    seq_len = c - k
    names = []
    for r in range(view.tokens.shape[1]):
        if r < seq_len:
            q = r
            names.append(None if q >= length else (("P" if view.tokens[b, r] == MASK else "O"), q))
        elif r < c:
            j = r - seq_len
            names.append(("G", j) if j < k_b else None)
        else:
            j = r - c
            names.append(("Q", j) if j < k_b else None)
    return names


@pytest.mark.parametrize("random_order", [False, True])
def test_masked_view_matches_the_slow_reference(random_order):
    lengths = [9, 4, 1, 12, 0]
    tgt = _targets(lengths)
    g = torch.Generator().manual_seed(1)
    masked = span_mask(tgt, PAD, generator=g)
    rank = masked_ranks(masked, random_order, g)
    view = masked_view(tgt, masked, PAD, MASK, rank)
    for b, n in enumerate(lengths):
        length = n + 2
        order = sorted((int(rank[b, q]), q) for q in range(length) if masked[b, q])
        order = [q for _, q in order]
        names = _names(view, b, length, len(order))
        expected = _reference_visibility(tgt[b], masked[b], order)
        content_names = names[: view.num_content]
        for r, row in enumerate(names):
            if row is None:
                continue
            got = {content_names[c] for c in range(view.num_content) if view.visible[b, r, c]}
            assert got == expected[row], (b, row)
        # tokens and positions of every part: O and P at their own positions, G_j and Q_j at m_j
        seq_len = view.num_content - view.masked_positions.shape[1]
        assert torch.equal(view.positions[b, :length], torch.arange(length))  # O and P rows
        for q in range(length):
            if not masked[b, q]:
                assert view.tokens[b, q] == tgt[b, q]  # O
        for j, m in enumerate(order):
            assert view.masked_positions[b, j] == m
            assert view.tokens[b, m] == MASK  # P_j
            assert view.tokens[b, seq_len + j] == tgt[b, m]  # G_j
            assert view.positions[b, seq_len + j] == m  # G_j
            assert view.tokens[b, view.num_content + j] == MASK  # Q_j
            assert view.positions[b, view.num_content + j] == m  # Q_j
        assert view.masked_valid[b].sum() == len(order)


def test_ar_view_is_causal_with_queries_one_ahead():
    tgt = _targets([5, 2])
    view = ar_view(tgt, PAD, MASK)
    n = tgt.shape[1] - 1
    assert view.num_content == n
    assert torch.equal(view.tokens[:, :n], tgt[:, :-1])
    assert (view.tokens[:, n:] == MASK).all()
    assert torch.equal(view.positions[0, n:], torch.arange(1, n + 1))
    for b, length in enumerate([7, 4]):
        for i in range(length - 1):
            expected = torch.arange(n) <= i
            assert torch.equal(view.visible[b, i], expected)  # content row i
            assert torch.equal(view.visible[b, n + i], expected)  # query row for position i + 1


def _changed_rows(model, view, enc, entry, b, new_token=7):
    with torch.no_grad():
        before = model.decode(view, enc)
        tokens = view.tokens.clone()
        tokens[b, entry] = new_token if tokens[b, entry] != new_token else new_token + 1
        after = model.decode(dataclasses.replace(view, tokens=tokens), enc)
    return (before - after).abs().amax(dim=-1) > 1e-6  # (B, R)


def _encoded(model, batch):
    g = torch.Generator().manual_seed(3)
    src = torch.randint(5, 40, (batch, 6), generator=g)
    src[:, -1] = EOS
    return model.encode(src)


def test_one_layer_rows_move_exactly_when_a_visible_entry_moves():
    """With one decoder layer a row's output depends on exactly the content entries it sees: perturb
    every content entry in turn; the rows that move are those that see it (and the entry's own row)."""
    model = _model(layers=1)
    tgt = _targets([8, 5])
    masked = span_mask(tgt, PAD, generator=torch.Generator().manual_seed(0))
    view = masked_view(tgt, masked, PAD, MASK)
    enc = _encoded(model, 2)
    for b in range(2):
        valid_rows = view.visible[b].any(dim=1)
        for c in range(view.num_content):
            if not view.visible[b, :, c].any():
                continue  # padding entry
            moved = _changed_rows(model, view, enc, c, b)
            expected = view.visible[b, :, c].clone()
            expected[c] = True
            assert torch.equal(moved[b] & valid_rows, expected & valid_rows), (b, c)
            assert not moved[1 - b].any()  # other sentences never move


def test_no_observed_or_placeholder_row_ever_sees_the_ground_truth():
    """Through every layer: changing G_j moves no O/P row, and only G_i (i >= j) and Q_i (i > j)."""
    model = _model(layers=3)
    tgt = _targets([10, 7, 3])
    masked = span_mask(tgt, PAD, generator=torch.Generator().manual_seed(5))
    view = masked_view(tgt, masked, PAD, MASK)
    enc = _encoded(model, 3)
    t, c = tgt.shape[1], view.num_content
    for b in range(3):
        k_b = int(view.masked_valid[b].sum())
        for j in range(k_b):
            moved = _changed_rows(model, view, enc, t + j, b)[b]
            length = int((tgt[b] != PAD).sum())
            assert not moved[:length].any(), "an O or P row saw a ground-truth token"
            g_moved = moved[t : t + k_b]
            q_moved = moved[c : c + k_b]
            assert torch.equal(g_moved, torch.arange(k_b) >= j)
            assert torch.equal(q_moved, torch.arange(k_b) > j)


def test_ar_view_never_sees_the_future():
    model = _model(layers=3)
    tgt = _targets([9])
    view = ar_view(tgt, PAD, MASK)
    enc = _encoded(model, 1)
    n = view.num_content
    for p in range(1, n):
        moved = _changed_rows(model, view, enc, p, 0)[0]
        assert not moved[:p].any() and moved[p:n].all()  # content rows
        assert not moved[n : n + p].any() and moved[n + p :].all()  # query rows predicting s_{<=p} vs later


def test_a_view_without_the_query_stream_gives_the_same_placeholder_outputs():
    """A CMLM reads only P_NAR: the O and P rows alone (no G, no query rows) give the same outputs at the
    placeholders as the full view, over a decoder T rows long instead of T + 2K."""
    model = _model(layers=3)
    tgt = _targets([9, 4, 6])
    masked = span_mask(tgt, PAD, generator=torch.Generator().manual_seed(2))
    full = masked_view(tgt, masked, PAD, MASK)
    lean = masked_view(tgt, masked, PAD, MASK, query_stream=False)
    assert lean.num_content == lean.tokens.shape[1] == tgt.shape[1]
    assert full.tokens.shape[1] == tgt.shape[1] + 2 * int(masked.sum(1).max())
    enc = _encoded(model, 3)
    with torch.no_grad():
        h_full, h_lean = model.decode(full, enc), model.decode(lean, enc)
    index = full.placeholder_rows[:, :, None].expand(-1, -1, h_full.shape[-1])
    valid = full.masked_valid[:, :, None]
    at_full, at_lean = h_full.gather(1, index), h_lean.gather(1, index)
    assert torch.allclose(at_full * valid, at_lean * valid, atol=1e-5)
    # and the lean rows are the full view's first T rows, visibility included
    t = tgt.shape[1]
    assert torch.equal(lean.visible, full.visible[:, :t, :t])
