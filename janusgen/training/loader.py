"""Batches ready for the device: collated, masked and (on a GPU) pinned, off the training thread.

`BatchMaker` turns a batch's identity (a `SampledBatch`: epoch, position, pair indices) into the
objective's `LossInputs` on the CPU, where the targets are: padding, the NAR/AUX view with its masks
drawn from the batch's own seed, the token counts. Because everything depends only on the identity,
the batches are the same whether they are made in the training process or in `DataLoader` workers
ahead of time, on any number of ranks. `batch_stream` chooses: on a GPU, workers with pinned memory
and prefetching, so that the device never waits for collation; on a CPU, the training thread itself
(workers would take the cores the training needs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from janusgen.data.batching import PairBatches, SampledBatch
from janusgen.model.config import ModelConfig
from janusgen.objectives import JanusObjective, LossInputs

GPU_WORKERS = 2  # default data workers per rank on a GPU: collation is light, two keep ahead of the device
PREFETCH_PER_WORKER = 4


@dataclass
class ReadyBatch:
    """A batch made by `BatchMaker`: its identity (for the seed of dropout and the sampler's position on
    resume) and its loss inputs."""

    sampled: SampledBatch
    seed: int
    inputs: LossInputs

    def pin_memory(self) -> ReadyBatch:  # DataLoader(pin_memory=True) calls this
        return ReadyBatch(self.sampled, self.seed, self.inputs.pin_memory())


class BatchMaker:
    """`maker[sampled]`: the `ReadyBatch` of a `SampledBatch` of `data`, masks drawn from the batch's
    seed (derived from `base_seed` and its identity). A map-style dataset for `DataLoader`."""

    def __init__(
        self, data: PairBatches, objective: JanusObjective, base_seed: int, model_cfg: ModelConfig
    ) -> None:
        self.data = data
        self.objective = objective
        self.base_seed = base_seed
        self.model_cfg = model_cfg

    def __getitem__(self, sampled: SampledBatch) -> ReadyBatch:
        seed = sampled.seed(self.base_seed)
        batch = self.data.collate(sampled.indices)
        generator = torch.Generator().manual_seed(seed)
        inputs = self.objective.prepare(batch.src, batch.tgt, batch.ar_tgt, self.model_cfg, generator)
        return ReadyBatch(sampled, seed, inputs)


def default_workers(device: torch.device) -> int:
    return GPU_WORKERS if device.type == "cuda" else 0


def batch_stream(
    maker: BatchMaker, batches: Iterable[SampledBatch], device: torch.device, workers: int | None = None
) -> Iterator[ReadyBatch]:
    """The ready batches of `batches`, in order: made in `workers` DataLoader worker processes (default:
    `default_workers`) with pinned memory on a GPU, or in this thread when `workers` is 0."""
    workers = default_workers(device) if workers is None else workers
    if workers == 0:
        return (maker[sampled] for sampled in batches)
    loader = DataLoader(
        maker,  # type: ignore[arg-type]  (indexed by SampledBatch, not int)
        sampler=batches,  # type: ignore[arg-type]  (an iterable of keys is all DataLoader needs)
        batch_size=None,
        collate_fn=_identity,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=PREFETCH_PER_WORKER,
        persistent_workers=False,
    )
    return iter(loader)


def _identity(batch: ReadyBatch) -> ReadyBatch:
    return batch
