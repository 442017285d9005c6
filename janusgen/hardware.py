"""What the machine can do, and the numeric precision that follows from it.

`--precision auto` (the default everywhere) resolves here: on CUDA bf16 where the GPU supports it, else
fp16 with loss scaling; on CPU bf16 only where the CPU has native bf16 instructions (AVX-512-BF16, AMX)
*and* a short matmul probe at the model's shapes confirms it beats float32, else float32. On a CPU
without them (AVX2 only) oneDNN emulates bf16 and a matmul runs ~100x slower than in float32.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from janusgen.errors import JanusError
from janusgen.training.config import PRECISIONS

DTYPE_OF = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# bf16 must beat float32 by this much in the probe: autocast adds casts, and the losses stay float32
MIN_BF16_SPEEDUP = 1.2


@dataclass(frozen=True)
class Hardware:
    """The facts the precision choice depends on (tests build these by hand)."""

    device_type: str  # cpu or cuda
    cpu_capability: str  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    cpu_bf16_native: bool  # oneDNN has native bf16 kernels (AVX-512-BF16 / AMX)
    cuda_bf16: bool = False
    cuda_name: str | None = None


def detect_hardware(device: torch.device | str) -> Hardware:
    device = torch.device(device)
    cuda = device.type == "cuda"
    return Hardware(
        device_type=device.type,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_bf16_native=_cpu_bf16_native(),
        cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        cuda_name=torch.cuda.get_device_name(device) if cuda else None,
    )


def _cpu_bf16_native() -> bool:
    # AVX2 kernels (ATEN_CPU_CAPABILITY=avx2 or an AVX2-only CPU) never get native bf16
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2", "NO AVX"):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# Timing on a shared machine: two things timed one after the other see different loads (an
# AR-only update once took 5.7 s and a joint one 0.94 s). They are timed in interleaved pairs instead, and
# the ratio is the median of the pairs' ratios; when the pairs disagree (the quartiles of their ratios
# more than BUSY_SPREAD apart) more pairs are taken, and if they still disagree the machine is too busy
# to measure, which the caller says (and decides safely).
BUSY_SPREAD = 1.5
PROBE_PAIRS = 7  # matmul pairs the bf16 probe times first
MAX_PAIRS_FACTOR = 3  # on disagreement, up to this many times more pairs


@dataclass(frozen=True)
class Timing:
    a_s: float  # median seconds of one call of `a`
    b_s: float  # median seconds of one call of `b`
    ratio: float  # median of the pairs' a / b ratios
    low: float  # lower and upper quartile of those ratios
    high: float
    busy: bool  # the quartiles stayed more than BUSY_SPREAD apart, even after more pairs

    @property
    def spread(self) -> float:
        """high / low: 1.0 when every pair agrees."""
        return self.high / max(self.low, 1e-12)


def time_pairs(
    a: Callable[[], object],
    b: Callable[[], object],
    samples: int = PROBE_PAIRS,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time `a` and `b` in `samples` interleaved pairs (a b, b a, a b, ...: a load that drifts during the
    measurement weighs on both alike), taking up to MAX_PAIRS_FACTOR times more while the pairs' ratios
    disagree. Call each once before, to warm up."""
    a_times: list[float] = []
    b_times: list[float] = []

    def take(pairs: int) -> None:
        for _ in range(pairs):
            order = ((a, a_times), (b, b_times)) if len(a_times) % 2 == 0 else ((b, b_times), (a, a_times))
            for fn, times in order:
                start = clock()
                fn()
                times.append(clock() - start)

    def quartiles() -> tuple[float, float]:
        ratios = sorted(x / max(y, 1e-12) for x, y in zip(a_times, b_times, strict=True))
        if len(ratios) < 2:
            return ratios[0], ratios[0]
        low, _, high = statistics.quantiles(ratios, n=4)
        return low, high

    def spread() -> float:
        low, high = quartiles()
        return high / max(low, 1e-12)

    samples = max(1, samples)
    take(samples)
    while spread() > BUSY_SPREAD and len(a_times) < samples * MAX_PAIRS_FACTOR:
        take(samples)
    ratios = [x / max(y, 1e-12) for x, y in zip(a_times, b_times, strict=True)]
    low, high = quartiles()
    return Timing(
        statistics.median(a_times),
        statistics.median(b_times),
        statistics.median(ratios),
        low,
        high,
        spread() > BUSY_SPREAD,
    )


def bf16_matmul_speedup(rows: int, d_model: int, ffn_dim: int, samples: int = PROBE_PAIRS) -> float | None:
    """float32 time / bf16 time of a (rows x d_model) @ (d_model x ffn_dim) matmul, the model's largest
    per-layer product, on this CPU and its current threads (`time_pairs`); None when the machine is too
    busy to tell which side of MIN_BF16_SPEEDUP it is on (the pairs' quartiles straddle it). A loaded
    machine that slows both alike still decides: the choice depends on the measurement, not on the load."""
    a = torch.randn(rows, d_model)
    b = torch.randn(d_model, ffn_dim)
    a16, b16 = a.to(torch.bfloat16), b.to(torch.bfloat16)
    a @ b  # warm up the kernels
    a16 @ b16
    timing = time_pairs(lambda: a @ b, lambda: a16 @ b16, samples)
    undecided = timing.busy and timing.low < MIN_BF16_SPEEDUP <= timing.high
    return None if undecided else timing.ratio


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32, bf16 or fp16: never auto
    reason: str
    bf16_speedup: float | None = None  # the probe's float32 / bf16 matmul time ratio, when measured

    @property
    def dtype(self) -> torch.dtype:
        return DTYPE_OF[self.precision]

    def to_dict(self) -> dict:
        return {"precision": self.precision, "reason": self.reason, "bf16_speedup": self.bf16_speedup}


def choose_precision(
    requested: str,
    hardware: Hardware,
    probe: Callable[[], float | None] | None = None,
) -> PrecisionChoice:
    """Resolve `requested` (auto, fp32, bf16, fp16) on `hardware`. `probe()` returns the measured
    float32 / bf16 speed ratio on this CPU, or None when the machine is too busy to measure it (called
    only on a CPU, only when needed)."""
    if requested not in PRECISIONS:
        raise JanusError(f"--precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if hardware.device_type == "cuda":
        name = hardware.cuda_name or "the GPU"
        if requested == "auto":
            if hardware.cuda_bf16:
                return PrecisionChoice("bf16", f"{name} supports bf16")
            return PrecisionChoice("fp16", f"{name} has no bf16: fp16 with loss scaling")
        if requested == "bf16" and not hardware.cuda_bf16:
            raise JanusError(f"--precision bf16: {name} does not support bf16; use fp16 or auto")
        return PrecisionChoice(requested, "asked for with --precision")

    if requested == "fp16":
        raise JanusError("--precision fp16 needs a GPU; on a CPU use auto, fp32 or bf16")
    if requested == "fp32":
        return PrecisionChoice("fp32", "asked for with --precision")
    cpu = f"CPU capability {hardware.cpu_capability}"
    if not hardware.cpu_bf16_native:
        if requested == "auto":
            return PrecisionChoice("fp32", f"{cpu} has no native bf16 (it would be emulated, ~100x slower)")
        speedup = probe() if probe is not None else None
        slower = f" (measured: a matmul {1 / speedup:.0f}x slower than in fp32)" if speedup else ""
        warnings.warn(
            f"--precision bf16 on a CPU without native bf16 ({cpu}): bf16 is emulated{slower}; "
            "training will crawl. Use --precision auto or fp32.",
            stacklevel=2,
        )
        return PrecisionChoice("bf16", f"asked for with --precision; {cpu} emulates it", speedup)
    if requested == "bf16":
        return PrecisionChoice("bf16", f"asked for with --precision; {cpu} has native bf16")
    speedup = probe() if probe is not None else MIN_BF16_SPEEDUP
    if speedup is None:  # a choice that changed from run to run with the load: the safe one, said so
        return PrecisionChoice(
            "fp32",
            f"{cpu} has native bf16, but the machine is too busy to measure its speed (repeated timings "
            f"disagreed by more than {BUSY_SPREAD}x): fp32; --precision bf16 uses bf16 anyway",
        )
    if speedup >= MIN_BF16_SPEEDUP:
        return PrecisionChoice(
            "bf16", f"{cpu} has native bf16, {speedup:.1f}x faster than fp32 at the model's shapes", speedup
        )
    return PrecisionChoice(
        "fp32",
        f"{cpu} has native bf16 but it is only {speedup:.2f}x fp32's speed at the model's shapes",
        speedup,
    )


def resolve_precision(
    requested: str, device: torch.device | str, d_model: int, ffn_dim: int, rows: int = 1024
) -> PrecisionChoice:
    """`choose_precision` on this machine, probing bf16 at the model's shapes when the choice needs it."""
    return choose_precision(
        requested, detect_hardware(device), probe=lambda: bf16_matmul_speedup(rows, d_model, ffn_dim)
    )


# -------------------------------------------------------------------------------------------- devices


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """The device `--device` names: cpu, cuda, auto (cuda when there is one), or cuda:N (that GPU,
    checked to exist). Under torchrun each rank takes GPU `local_rank` of those it sees; a rank that sees
    a single GPU (SLURM --gpus-per-task=1, Kubernetes, CUDA_VISIBLE_DEVICES set per rank) takes that one."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference in ("auto", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda", cuda_index(local_rank, torch.cuda.device_count()))
        if preference == "cuda":
            raise JanusError("--device cuda: no CUDA device is available")
        return torch.device("cpu")
    return check_device(preference)


def cuda_index(local_rank: int, visible: int) -> int:
    """The GPU of rank `local_rank` among the `visible` ones this process sees."""
    if visible == 1:
        return 0
    if local_rank < visible:
        return local_rank
    raise JanusError(
        f"LOCAL_RANK {local_rank} but this process sees {visible} GPUs: start at most {visible} ranks per "
        "machine, or give each rank one GPU (CUDA_VISIBLE_DEVICES)"
    )


def check_device(name: str | torch.device) -> torch.device:
    """The device `--device` names (auto, cpu, cuda or cuda:N), or a JanusError naming --device exactly as
    given when it does not exist on this machine (instead of torch's error when the model is moved)."""
    if isinstance(name, torch.device):
        name = str(name)
    if name in ("auto", "cpu", "cuda"):
        return pick_device(name)
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type != "cuda" or device.index is None:
        raise JanusError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise JanusError(f"--device {name}: no CUDA device is available")
    if device.index >= torch.cuda.device_count():
        raise JanusError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
