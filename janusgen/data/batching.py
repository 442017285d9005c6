"""Token-budget batching: group pairs of similar length so that padding is small and each batch fits
a budget of `max_tokens` padded tokens (batch size x longest side, counted on both sides).

The batch list of an epoch depends only on (seed, epoch), never on the number of ranks, so a run can
resume mid-epoch with a different number of DDP ranks: the sampler remembers how many batches of the
global list were consumed and each rank takes every `world_size`-th batch from there. `PairBatches`
puts it together for a split of a prepared dataset: the pairs that fit the model, sampled and padded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from janusgen.errors import JanusError

if TYPE_CHECKING:
    from janusgen.data.dataset import PairDataset
    from janusgen.model.config import ModelConfig


def pack_by_tokens(
    order: np.ndarray, cost: np.ndarray, max_tokens: int, max_sentences: int | None = None
) -> list[np.ndarray]:
    """Split `order` (indices sorted by non-decreasing `cost`) into consecutive batches whose
    size x largest cost stays within `max_tokens`.

    Because costs are sorted, the largest cost of a batch is that of its last member, so the batch
    that starts at `s` is the longest prefix of `order[s:]` with `k * cost[k-th] <= max_tokens`;
    that prefix is found with one vectorised comparison over a window of at most
    `max_tokens // cost[order[s]]` entries, which keeps the whole packing O(number of pairs).
    """
    sorted_cost = cost[order]
    if len(order) and sorted_cost[-1] > max_tokens:
        raise JanusError(
            f"a pair needs {int(sorted_cost[-1])} tokens but --max-tokens is {max_tokens}: raise "
            "--max-tokens or lower the maximum length"
        )
    batches = []
    start, n = 0, len(order)
    while start < n:
        cap = max(1, max_tokens // max(int(sorted_cost[start]), 1))
        if max_sentences is not None:
            cap = min(cap, max_sentences)
        window = sorted_cost[start : start + cap]
        fits = np.arange(1, len(window) + 1) * window <= max_tokens
        size = int(np.argmin(fits)) if not fits.all() else len(window)
        batches.append(order[start : start + size])
        start += size
    return batches


@dataclass(frozen=True)
class SampledBatch:
    """A batch and its place in the global batch list. (seed, epoch, position) identifies it whatever the
    number of ranks, so the trainer derives its random seed (masks, dropout) from them."""

    epoch: int
    position: int
    indices: np.ndarray

    def seed(self, base_seed: int) -> int:
        return int(np.random.SeedSequence([base_seed, self.epoch, self.position]).generate_state(1)[0])


class TokenBudgetSampler:
    """Deterministic, resumable, shardable batches of pair indices.

    `src_lengths` and `tgt_lengths` are the lengths the model will see (special tokens included).
    Each epoch: shuffle the pairs with (seed, epoch), stable-sort them by padded cost so that
    equal-length pairs land in a different order every epoch, pack them, shuffle the batches.
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        max_tokens: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        max_sentences: int | None = None,
        even: bool = True,
    ) -> None:
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError("src_lengths and tgt_lengths differ in length")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.cost = np.maximum(np.asarray(src_lengths), np.asarray(tgt_lengths)).astype(np.int64)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        # training: every rank takes the same number of batches (DDP steps together); validation: all
        # batches, however unevenly they fall on the ranks (the trainer weights the sums)
        self.even = even
        self.epoch = 0
        self.consumed = 0  # batches of the epoch's global list already handed out (all ranks)
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of `epoch`, the same on every rank; with `even`, trimmed to a multiple of
        world_size so that every rank takes the same number of steps."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        n = len(self.cost)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(n)
            # lexsort is stable and sorts by its last key first: cost, then target length
            order = perm[np.lexsort((self.tgt_lengths[perm], self.cost[perm]))]
        else:
            order = np.lexsort((self.tgt_lengths, self.cost))
        batches = pack_by_tokens(order, self.cost, self.max_tokens, self.max_sentences)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) - len(batches) % self.world_size if self.even else len(batches)
        if usable == 0 and batches:
            raise JanusError(
                f"only {len(batches)} batch(es) for {self.world_size} ranks: "
                "lower --max-tokens or use fewer ranks"
            )
        self._cache = (epoch, batches[:usable])
        return self._cache[1]

    def __len__(self) -> int:
        """Batches per rank in the current epoch."""
        return len(self.global_batches(self.epoch)) // self.world_size

    def epoch_batches(self) -> Iterator[SampledBatch]:
        """This rank's remaining batches of the current epoch; afterwards the epoch advances."""
        batches = self.global_batches(self.epoch)
        while self.consumed < len(batches):
            position = self.consumed + self.rank
            self.consumed += self.world_size
            yield SampledBatch(self.epoch, position, batches[position])
        self.epoch += 1
        self.consumed = 0

    def __iter__(self) -> Iterator[SampledBatch]:
        """Batches forever, epoch after epoch (training stops by update count or time)."""
        while True:
            yield from self.epoch_batches()

    def rank_batches(self, epoch: int) -> list[SampledBatch]:
        """This rank's share of the whole of `epoch` (every world_size-th batch), without advancing."""
        batches = self.global_batches(epoch)
        return [SampledBatch(epoch, p, batches[p]) for p in range(self.rank, len(batches), self.world_size)]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed}

    def state_after(self, sampled: SampledBatch) -> dict[str, int]:
        """The state right after this rank consumed `sampled`, whatever was fetched ahead since (a data
        loader prefetches): every rank has then consumed the step's batches up to this one's."""
        return {
            "epoch": sampled.epoch,
            "consumed": sampled.position - self.rank + self.world_size,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise JanusError(f"resuming with seed {self.seed} but the run used seed {state['seed']}")
        self.epoch = int(state["epoch"])
        # a different world size may resume mid-epoch: round the position up to a whole step
        consumed = int(state["consumed"])
        if not 0 <= consumed <= len(self.cost):  # every batch holds a pair: an epoch has no more batches
            raise JanusError(
                f"sampler.consumed {consumed}: an epoch of {len(self.cost)} pairs has no such position"
            )
        self.consumed = -(-consumed // self.world_size) * self.world_size


@dataclass
class Batch:
    """Padded token ids. src: (B, S) = tokens + EOS; tgt: (B, T) = BOS + tokens + EOS; ar_tgt: the
    targets of the AR view where they differ from tgt (distilled data: the original references)."""

    src: torch.Tensor
    tgt: torch.Tensor
    ar_tgt: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        ar_tgt = None if self.ar_tgt is None else self.ar_tgt.to(device, non_blocking=True)
        return Batch(self.src.to(device, non_blocking=True), self.tgt.to(device, non_blocking=True), ar_tgt)


def pad_flat(
    flat: np.ndarray, lengths: np.ndarray, pad_id: int, prefix: int | None = None, suffix: int | None = None
) -> torch.Tensor:
    """Right-pad sequences given back to back (`flat`, with `lengths`) into a (B, max_len) LongTensor,
    optionally adding a first and a last token to each, with one scatter instead of a loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    b = len(lengths)
    extra = (prefix is not None) + (suffix is not None)
    total = lengths + extra
    out = np.full((b, int(total.max(initial=0))), pad_id, dtype=np.int64)
    rows = np.repeat(np.arange(b), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols + (1 if prefix is not None else 0)] = flat
    if prefix is not None:
        out[:, 0] = prefix
    if suffix is not None:
        out[np.arange(b), total - 1] = suffix
    return torch.from_numpy(out)


def pad_sequences(
    seqs: Sequence[np.ndarray], pad_id: int, prefix: int | None = None, suffix: int | None = None
) -> torch.Tensor:
    """`pad_flat` for a list of 1-D id arrays."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    flat = np.concatenate(seqs).astype(np.int64) if len(seqs) else np.zeros(0, np.int64)
    return pad_flat(flat, lengths, pad_id, prefix, suffix)


class PairBatches:
    """A split's pairs that fit the model, batched by token budget, as padded tensors: rank `rank` of
    `world_size` takes every `world_size`-th batch of the epoch's global list (TokenBudgetSampler)."""

    def __init__(
        self,
        dataset: PairDataset,
        model_cfg: ModelConfig,
        max_tokens: int,
        seed: int,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        ar_on_references: bool = False,
        even: bool = True,
    ) -> None:
        self.dataset = dataset
        if ar_on_references and dataset.references is None:
            raise JanusError(
                f"--ar-targets references: {dataset.data_dir} keeps no original references for split "
                f"'{dataset.split}' (only data written by `janus distill` does); use --ar-targets data"
            )
        self.references = dataset.references if ar_on_references else None
        # source: tokens + EOS; target: BOS + tokens + EOS; the length classifier caps n
        max_src = model_cfg.max_positions - 1
        max_tgt = min(model_cfg.max_positions - 2, model_cfg.max_target_length)
        self.kept, self.dropped = dataset.filter_by_length(max_src, max_tgt)
        tgt_lengths = dataset.tgt_lengths
        if self.references is not None:  # both targets must fit; the batch pads to the longer one
            fits = self.references.lengths[self.kept] <= max_tgt
            self.dropped += int((~fits).sum())
            self.kept = self.kept[fits]
            tgt_lengths = np.maximum(tgt_lengths, self.references.lengths)
        if len(self.kept) == 0:
            raise JanusError(
                f"{dataset.data_dir}: no pair of split '{dataset.split}' fits the model's maximum "
                f"length ({model_cfg.max_positions} positions)"
            )
        self.sampler = TokenBudgetSampler(
            dataset.src_lengths[self.kept] + 1,
            tgt_lengths[self.kept] + 2,
            max_tokens,
            seed=seed,
            shuffle=shuffle,
            rank=rank,
            world_size=world_size,
            even=even,
        )
        self.pad_id, self.bos_id, self.eos_id = model_cfg.pad_id, model_cfg.bos_id, model_cfg.eos_id

    def collate(self, positions: np.ndarray) -> Batch:
        """The batch of the kept pairs at `positions` (a sampler's indices)."""
        indices = self.kept[positions]
        src = pad_flat(*self.dataset.src.gather(indices), pad_id=self.pad_id, suffix=self.eos_id)
        tgt = pad_flat(
            *self.dataset.tgt.gather(indices), pad_id=self.pad_id, prefix=self.bos_id, suffix=self.eos_id
        )
        ar_tgt = None
        if self.references is not None:
            ar_tgt = pad_flat(
                *self.references.gather(indices), pad_id=self.pad_id, prefix=self.bos_id, suffix=self.eos_id
            )
        return Batch(src, tgt, ar_tgt)
