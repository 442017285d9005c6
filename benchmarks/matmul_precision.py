"""GFLOP/s of a square matmul in float32 and bfloat16 on one thread: does this CPU have native bf16?

    python benchmarks/matmul_precision.py
    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 \
        python benchmarks/matmul_precision.py          # the same CPU restricted to AVX2 kernels
"""

from __future__ import annotations

import argparse
import time

import torch


def gflops(dtype: torch.dtype, n: int, reps: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm up the kernel
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    fp32, bf16 = gflops(torch.float32, args.size, 20), gflops(torch.bfloat16, args.size, 5)
    print(
        f"capability {torch.backends.cpu.get_cpu_capability()}: fp32 {fp32:.1f} GFLOP/s, "
        f"bf16 {bf16:.1f} GFLOP/s ({bf16 / fp32:.2f}x)"
    )


if __name__ == "__main__":
    main()
