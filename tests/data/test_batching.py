import numpy as np
import pytest
import torch

from janusgen.data.batching import TokenBudgetSampler, pack_by_tokens, pad_sequences
from janusgen.errors import JanusError


def _indices(batches):
    return [b.indices for b in batches]


def _lengths(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(2, 60, n), rng.integers(3, 60, n)


def test_every_pair_once_per_epoch_within_budget():
    src, tgt = _lengths()
    sampler = TokenBudgetSampler(src, tgt, max_tokens=400, seed=1)
    batches = [b.indices for b in sampler.epoch_batches()]
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(src)))
    cost = np.maximum(src, tgt)
    for b in batches:
        assert len(b) * cost[b].max() <= 400
    assert sampler.epoch == 1 and sampler.consumed == 0


def test_packing_is_greedy_and_tight():
    cost = np.array([3, 3, 3, 4, 4, 10, 10, 10])
    batches = pack_by_tokens(np.arange(8), cost, max_tokens=12)
    # 3 x 3 = 9 fits, adding a 4 makes 4 x 4 = 16 > 12; then 4,4 (8) + 10 would be 30
    assert [b.tolist() for b in batches] == [[0, 1, 2], [3, 4], [5], [6], [7]]


def test_pair_over_budget_is_a_clear_error():
    with pytest.raises(JanusError, match="--max-tokens"):
        pack_by_tokens(np.arange(2), np.array([5, 50]), max_tokens=20)


def test_deterministic_and_different_per_epoch():
    src, tgt = _lengths()
    a = TokenBudgetSampler(src, tgt, 300, seed=3)
    b = TokenBudgetSampler(src, tgt, 300, seed=3)
    e0a, e0b = _indices(a.epoch_batches()), _indices(b.epoch_batches())
    assert all(np.array_equal(x, y) for x, y in zip(e0a, e0b, strict=True))
    e1 = _indices(a.epoch_batches())
    assert not all(np.array_equal(x, y) for x, y in zip(e0a, e1, strict=False))
    other = _indices(TokenBudgetSampler(src, tgt, 300, seed=4).epoch_batches())
    assert not all(np.array_equal(x, y) for x, y in zip(e0a, other, strict=False))


def test_similar_lengths_share_a_batch():
    src, tgt = _lengths(2000)
    batches = _indices(TokenBudgetSampler(src, tgt, 1000, seed=0).epoch_batches())
    cost = np.maximum(src, tgt)
    padding = sum(len(b) * cost[b].max() - cost[b].sum() for b in batches)
    assert padding / cost.sum() < 0.05


def test_resume_mid_epoch_gives_the_same_stream():
    src, tgt = _lengths()
    full = TokenBudgetSampler(src, tgt, 300, seed=5)
    it = iter(full)
    reference = [next(it).indices for _ in range(len(full) + 7)]  # crosses an epoch boundary

    first = TokenBudgetSampler(src, tgt, 300, seed=5)
    it = iter(first)
    head = [next(it).indices for _ in range(10)]
    state = first.state_dict()
    resumed = TokenBudgetSampler(src, tgt, 300, seed=5)
    resumed.load_state_dict(state)
    it = iter(resumed)
    tail = [next(it).indices for _ in range(len(reference) - 10)]
    assert all(np.array_equal(x, y) for x, y in zip(head + tail, reference, strict=True))


def test_resume_refuses_another_seed():
    src, tgt = _lengths()
    s = TokenBudgetSampler(src, tgt, 300, seed=5)
    with pytest.raises(JanusError, match="seed"):
        TokenBudgetSampler(src, tgt, 300, seed=6).load_state_dict(s.state_dict())


def test_ranks_get_disjoint_shards_and_equal_steps():
    src, tgt = _lengths(997)
    world = 3
    samplers = [TokenBudgetSampler(src, tgt, 300, seed=2, rank=r, world_size=world) for r in range(world)]
    shards = [_indices(s.epoch_batches()) for s in samplers]
    assert len({len(s) for s in shards}) == 1
    assert len(shards[0]) == len(samplers[0].global_batches(0)) // world
    flat = [np.concatenate(s) for s in shards]
    for i in range(world):
        for j in range(i + 1, world):
            assert not set(flat[i].tolist()) & set(flat[j].tolist())
    # the union is the whole global list, which is the single-process epoch trimmed to a multiple of 3
    single = TokenBudgetSampler(src, tgt, 300, seed=2).global_batches(0)
    assert sum(len(b) for b in single[: len(shards[0]) * world]) == sum(len(f) for f in flat)


def test_resume_with_a_different_world_size_continues_the_global_list():
    src, tgt = _lengths(800)
    two = [TokenBudgetSampler(src, tgt, 300, seed=7, rank=r, world_size=2) for r in range(2)]
    iters = [iter(s) for s in two]
    for _ in range(4):
        for it in iters:
            next(it)
    state = two[0].state_dict()
    assert state["consumed"] == 8
    one = TokenBudgetSampler(src, tgt, 300, seed=7)
    one.load_state_dict(state)
    global_list = one.global_batches(0)
    batch = next(iter(one))
    assert batch.position == 8 and np.array_equal(batch.indices, global_list[8])


def test_pad_sequences_adds_bos_eos_and_pads():
    seqs = [np.array([5, 6, 7]), np.array([8]), np.array([], dtype=np.int64)]
    out = pad_sequences(seqs, pad_id=0, prefix=2, suffix=3)
    assert out.dtype == torch.long
    assert out.tolist() == [[2, 5, 6, 7, 3], [2, 8, 3, 0, 0], [2, 3, 0, 0, 0]]
    assert pad_sequences(seqs, pad_id=1, suffix=3).tolist() == [[5, 6, 7, 3], [8, 3, 1, 1], [3, 1, 1, 1]]


def test_batch_seed_depends_on_identity_not_on_rank_layout():
    src, tgt = _lengths(400)
    single = list(TokenBudgetSampler(src, tgt, 300, seed=9).epoch_batches())
    ranks = [
        list(TokenBudgetSampler(src, tgt, 300, seed=9, rank=r, world_size=2).epoch_batches())
        for r in range(2)
    ]
    by_position = {b.position: b for shard in ranks for b in shard}
    for b in single[: len(by_position)]:
        assert by_position[b.position].seed(1) == b.seed(1)
        assert np.array_equal(by_position[b.position].indices, b.indices)
    assert len({b.seed(1) for b in single}) == len(single)


def test_pair_batches_keep_what_fits_collate_bos_eos_and_shard_by_rank(toy_data):
    import dataclasses

    from janusgen.data.batching import PairBatches
    from janusgen.data.dataset import PairDataset
    from janusgen.presets import model_preset

    dataset = PairDataset.open(toy_data, "train")
    cfg = dataclasses.replace(model_preset("tiny"), vocab_size=dataset.tokenizer.vocab_size)
    longest = int(dataset.tgt_lengths.max())
    short = dataclasses.replace(cfg, max_target_length=longest - 1)  # the longest targets no longer fit
    batches = PairBatches(dataset, short, 256, seed=0, shuffle=True)
    assert batches.dropped == int((dataset.tgt_lengths > longest - 1).sum()) > 0
    assert len(batches.kept) + batches.dropped == len(dataset)
    sampled = next(iter(batches.sampler))
    batch = batches.collate(sampled.indices)
    rows = batches.kept[sampled.indices]
    assert (batch.tgt[:, 0] == cfg.bos_id).all()
    for row, i in enumerate(rows):
        n_src, n_tgt = int(dataset.src_lengths[i]), int(dataset.tgt_lengths[i])
        assert batch.src[row, :n_src].tolist() == dataset.src[int(i)].tolist()
        assert batch.src[row, n_src] == cfg.eos_id and batch.tgt[row, n_tgt + 1] == cfg.eos_id
        assert batch.tgt[row, 1 : n_tgt + 1].tolist() == dataset.tgt[int(i)].tolist()
    ranks = [PairBatches(dataset, cfg, 256, 0, True, rank=r, world_size=2).sampler for r in (0, 1)]
    epoch = [np.concatenate([b.indices for b in s.epoch_batches()]) for s in ranks]
    assert not set(epoch[0].tolist()) & set(epoch[1].tolist())  # each rank its own batches
