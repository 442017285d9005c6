"""Training throughput of the three objectives on the same batches, in one process.

Measures target tokens/s and seconds per update for `ar`, `cmlm` and `janus` (rounds interleaved
so that machine noise hits all three alike), the janus/ar step-time ratio, and the achieved matmul
FLOP/s (counted with torch's FlopCounterMode) as a fraction of this machine's measured GEMM peak.

    python benchmarks/train_throughput.py --data work/bible_data --preset small --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from janusgen.data.batching import PairBatches
from janusgen.data.dataset import PairDataset
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.presets import model_preset, objective_preset
from janusgen.training.config import TrainConfig
from janusgen.training.optim import build_optimizer


def gemm_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large square matmul: the practical peak that model matmuls can hope to reach."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20, help="timed updates per objective")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds (steps are split across them)"
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = PairDataset.open(args.data, "train")
    tok = data.tokenizer
    model_cfg = dataclasses.replace(model_preset(args.preset), vocab_size=tok.vocab_size)
    batches = PairBatches(data, model_cfg, args.max_tokens, seed=0, shuffle=True)
    stream = iter(batches.sampler)
    fixed = [batches.collate(next(stream).indices) for _ in range(args.steps + 2)]

    systems = {}
    for name in ("ar", "cmlm", "janus"):
        torch.manual_seed(0)
        model = JanusTransformer(model_cfg).train()
        systems[name] = (model, JanusObjective(objective_preset(name)), build_optimizer(model, TrainConfig()))
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if args.precision == "bf16"
        else torch.autocast("cpu", enabled=False)
    )

    def step(name: str, batch) -> None:
        model, objective, opt = systems[name]
        with autocast:
            out = objective(model, batch.src, batch.tgt)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    flops = {}
    for name in systems:
        step(name, fixed[0])  # warm up
        with FlopCounterMode(display=False) as counter:
            step(name, fixed[1])
        flops[name] = counter.get_total_flops()

    timed = fixed[2:]
    seconds = dict.fromkeys(systems, 0.0)
    per_round = max(1, len(timed) // args.rounds)
    for r in range(args.rounds):
        chunk = timed[r * per_round : (r + 1) * per_round]
        for name in systems:
            start = time.perf_counter()
            for batch in chunk:
                step(name, batch)
            seconds[name] += time.perf_counter() - start
    n_steps = per_round * args.rounds
    tokens = sum(int((b.tgt[:, 1:] != 0).sum()) for b in timed[:n_steps])
    peak = gemm_peak(torch.bfloat16 if args.precision == "bf16" else torch.float32)
    flops_ratio_batch = sum(int((b.tgt[:, 1:] != 0).sum()) for b in fixed[1:2])

    results = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "preset": args.preset,
        "precision": args.precision,
        "parameters_M": round(systems["ar"][0].num_parameters() / 1e6, 2),
        "max_tokens": args.max_tokens,
        "timed_updates": n_steps,
        "gemm_peak_gflops": round(peak / 1e9, 1),
        "systems": {},
    }
    for name in systems:
        step_s = seconds[name] / n_steps
        achieved = flops[name] / step_s  # FLOP count of the flop-counted batch, a typical batch
        results["systems"][name] = {
            "tgt_tokens_per_s": round(tokens / seconds[name], 1),
            "s_per_update": round(step_s, 4),
            "gflop_per_update": round(flops[name] / 1e9, 2),
            "fraction_of_gemm_peak": round(achieved / peak, 3),
        }
    results["janus_over_ar_step_time"] = round(seconds["janus"] / seconds["ar"], 3)
    results["janus_over_ar_flops"] = round(flops["janus"] / flops["ar"], 3)
    results["flop_counted_batch_tgt_tokens"] = flops_ratio_batch
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
