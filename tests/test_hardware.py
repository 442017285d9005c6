"""The precision choice, on mocked hardware: both CPU kinds, CUDA with and without bf16."""

from __future__ import annotations

import pytest
import torch

from janusgen.errors import JanusError
from janusgen.hardware import Hardware, bf16_matmul_speedup, choose_precision

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
    assert bf16_matmul_speedup(32, 16, 16, budget_s=0.05) > 0
