"""One update reads nothing back from the device: a GPU would wait for all queued work at every such
read. Counted on the CPU by the aten operations that force one (`.item()`, `int()`, `float()`, `bool()`
of a tensor, and operations whose output size depends on the data)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from janusgen.presets import objective_preset
from janusgen.training.config import TrainConfig

# aten operations that wait for the device: a scalar read, or an output whose size depends on the values
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_dim"}
SYNCING |= {"unique_consecutive", "repeat_interleave", "equal", "is_nonzero", "item"}
MAX_SYNCS_PER_UPDATE = 2  # outside the log window


class SyncCounter(TorchDispatchMode):
    """Counts the syncing operations run inside it, except on the tensors `host_tensors` (which stay on
    the CPU on a GPU run too)."""

    def __init__(self, host_tensors: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.host = {id(t) for t in host_tensors}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if args and isinstance(args[0], torch.Tensor) and id(args[0]) in self.host:
            return func(*args, **(kwargs or {}))
        bool_index = name == "index" and any(
            isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in (args[1] or ())
        )
        if name in SYNCING or bool_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("objective", "precision"),
    [("janus", "fp32"), ("janus", "bf16"), ("cmlm", "fp32"), ("ar", "fp32"), ("janus", "fp16")],
)
def test_an_update_reads_nothing_back_from_the_device(toy_data, tmp_path, make_trainer, objective, precision):
    cfg = TrainConfig(max_tokens=512, warmup_updates=2, precision=precision, update_freq=2, seed=3)
    trainer = make_trainer(toy_data, tmp_path, objective_preset(objective), cfg)
    stream = iter(trainer.train_data.sampler)
    batches = [trainer.train_maker[next(stream)] for _ in range(4)]
    trainer.train_step(batches[:2])  # the first update may set things up
    # AdamW's step counters live on the CPU on a GPU too (and on the device only with fused=True, which
    # reads none): reading them waits for nothing
    steps = tuple(state["step"] for state in trainer.optimizer.state.values())
    with SyncCounter(steps) as counter:
        trainer.train_step(batches[2:])
    # fp16's loss scaler must read whether a gradient overflowed: its one read is allowed
    assert len(counter.seen) <= MAX_SYNCS_PER_UPDATE, counter.seen
    if precision != "fp16":
        assert counter.seen == [], counter.seen


def test_the_counter_sees_a_read(toy_data, tmp_path):
    """The counter is not blind: the old way of logging (float() of every term) is counted."""
    with SyncCounter() as counter:
        x = torch.ones(3)
        float(x.sum())
        int((x > 0).sum())
        x[x > 0]
    assert len(counter.seen) == 3
