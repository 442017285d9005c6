"""The precision choice, on mocked hardware: both CPU kinds, CUDA with and without bf16."""

from __future__ import annotations

import pytest
import torch

from janusgen.errors import JanusError
from janusgen.hardware import (
    BUSY_SPREAD,
    Hardware,
    Timing,
    bf16_matmul_speedup,
    choose_precision,
    time_pairs,
)

AVX2 = Hardware("cpu", "AVX2", cpu_bf16_native=False)
AMX = Hardware("cpu", "AVX512", cpu_bf16_native=True)
H100 = Hardware("cuda", "AVX512", cpu_bf16_native=True, cuda_bf16=True, cuda_name="H100")
V100 = Hardware("cuda", "AVX2", cpu_bf16_native=False, cuda_bf16=False, cuda_name="V100")


def _never() -> float:
    raise AssertionError("the probe must not run here")


def test_auto_on_an_avx2_cpu_is_fp32_without_probing():
    choice = choose_precision("auto", AVX2, probe=_never)
    assert choice.precision == "fp32" and "AVX2" in choice.reason and "emulated" in choice.reason


@pytest.mark.parametrize(("speedup", "expected"), [(2.4, "bf16"), (1.05, "fp32")])
def test_auto_on_a_native_bf16_cpu_follows_the_probe(speedup, expected):
    choice = choose_precision("auto", AMX, probe=lambda: speedup)
    assert choice.precision == expected and choice.bf16_speedup == speedup
    assert f"{speedup:.1f}x" in choice.reason or f"{speedup:.2f}x" in choice.reason


def test_auto_on_cuda_is_bf16_where_supported_else_fp16():
    assert choose_precision("auto", H100, probe=_never).precision == "bf16"
    v100 = choose_precision("auto", V100, probe=_never)
    assert v100.precision == "fp16" and "loss scaling" in v100.reason


def test_explicit_bf16_on_an_emulating_cpu_warns_with_the_measured_slowdown():
    with pytest.warns(UserWarning, match=r"emulated \(measured: a matmul 100x slower"):
        choice = choose_precision("bf16", AVX2, probe=lambda: 0.01)
    assert choice.precision == "bf16"


def test_explicit_choices_are_kept_or_refused_with_the_option_named():
    assert choose_precision("fp32", AMX, probe=_never).precision == "fp32"
    assert choose_precision("bf16", AMX, probe=_never).precision == "bf16"
    assert choose_precision("fp16", H100).precision == "fp16"
    with pytest.raises(JanusError, match="--precision fp16 needs a GPU"):
        choose_precision("fp16", AMX)
    with pytest.raises(JanusError, match="--precision bf16: V100 does not support bf16"):
        choose_precision("bf16", V100)
    with pytest.raises(JanusError, match="--precision 'fp8'"):
        choose_precision("fp8", AMX)


def test_the_probe_measures_a_positive_ratio():
    torch.manual_seed(0)
    speedup = bf16_matmul_speedup(32, 16, 16)
    assert speedup is None or speedup > 0


# ------------------------------------------------------------------- measuring on a busy machine


class FakeClock:
    """A clock that only the timed functions advance: `load(t)` scales every duration started at t."""

    def __init__(self, load=lambda t: 1.0) -> None:
        self.t, self.load = 0.0, load

    def __call__(self) -> float:
        return self.t

    def work(self, seconds: float):
        def run() -> None:
            self.t += seconds * self.load(self.t)

        return run


def test_paired_timing_is_stable_when_the_load_changes_during_the_measurement():
    """A timed in one block and B in the next made a load change between the blocks look like
    a 6x difference (an AR-only update at 5.7 s, a joint one at 0.94 s). Interleaved pairs see the same
    load: their ratio stays the true one."""
    clock = FakeClock(load=lambda t: 6.0 if t < 30 else 1.0)  # busy at first, then quiet
    timing = time_pairs(clock.work(1.0), clock.work(2.0), samples=7, clock=clock)
    assert timing.ratio == pytest.approx(0.5)
    assert not timing.busy


def test_a_machine_whose_timings_disagree_is_reported_busy():
    bursts = iter([1, 1, 8, 1, 1, 1, 9, 1, 1, 1, 7, 1, 1, 1, 1, 6] * 10)
    clock = FakeClock(load=lambda t: next(bursts))  # a burst of load every few samples, hitting one side
    timing = time_pairs(clock.work(1.0), clock.work(1.0), samples=7, clock=clock)
    assert timing.busy and timing.spread > BUSY_SPREAD


def test_auto_on_a_busy_machine_is_fp32_and_says_why():
    """`--precision auto` chose bf16 in some fresh runs and fp32 in others under load."""
    choice = choose_precision("auto", AMX, probe=lambda: None)  # the probe could not measure
    assert choice.precision == "fp32" and "too busy" in choice.reason


def test_the_probe_says_when_it_cannot_tell_and_decides_when_it_can(monkeypatch):
    """Busy or not, the probe answers when its pairs fall clearly on one side of the threshold; it says it
    cannot measure only when they straddle it."""
    import janusgen.hardware

    def probe_with(timing: Timing) -> float | None:
        monkeypatch.setattr(janusgen.hardware, "time_pairs", lambda *a, **k: timing)
        return bf16_matmul_speedup(8, 8, 8)

    assert probe_with(Timing(1.0, 1.0, 1.1, 0.6, 4.0, True)) is None  # straddles 1.2: cannot tell
    assert probe_with(Timing(2.0, 1.0, 2.0, 1.4, 3.0, True)) == 2.0  # busy, but clearly faster
    assert probe_with(Timing(1.0, 1.0, 0.9, 0.5, 1.1, True)) == 0.9  # busy, but clearly not
    assert probe_with(Timing(1.0, 1.0, 1.2, 1.15, 1.25, False)) == 1.2  # quiet: the median decides
