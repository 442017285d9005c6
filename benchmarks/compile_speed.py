"""What `torch.compile` (inductor) buys on this machine: the `janus` training step of the `compact` preset,
and AR greedy decoding at batch 1, each compiled against eager in one process, interleaved so that
machine noise hits both alike. Compile time is reported apart (it is paid once per process).

    python benchmarks/compile_speed.py --json benchmarks/results/compile_speed_avx512.json
    # the AVX2 kernels of an AVX2-only CPU, on an AVX-512 machine:
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/compile_speed.py --json benchmarks/results/compile_speed_avx2.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from janusgen.config import DecodeConfig
from janusgen.data.batching import SampledBatch
from janusgen.decoding.api import decode
from janusgen.model.inference import prepare_for_inference
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.presets import model_preset, objective_preset
from janusgen.training.config import TrainConfig
from janusgen.training.distributed import DistributedContext
from janusgen.training.loader import ReadyBatch
from janusgen.training.trainer import Trainer


def _batches(cfg, objective, count: int, max_tokens: int = 2048) -> list[ReadyBatch]:
    """Bible-like batches: pairs of 20-60 tokens, as many as fit `max_tokens`."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        length = int(rng.integers(20, 61))
        rows = max_tokens // (length + 2)
        src = torch.randint(5, cfg.vocab_size, (rows, length + 1))
        tgt = torch.randint(5, cfg.vocab_size, (rows, length + 2))
        src[:, -1], tgt[:, 0], tgt[:, -1] = cfg.eos_id, cfg.bos_id, cfg.eos_id
        inputs = objective.prepare(src, tgt, None, cfg, torch.Generator().manual_seed(i))
        out.append(ReadyBatch(SampledBatch(0, i, np.arange(rows)), i, inputs))
    return out


def train_steps(precision: str, steps: int, rounds: int) -> dict:
    cfg = dataclasses.replace(model_preset("compact"), vocab_size=4000, dropout=0.0)
    objective = objective_preset("janus")
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for compiled in (False, True):
            torch.manual_seed(0)
            model = JanusTransformer(cfg)
            train_cfg = TrainConfig(precision=precision, compile=compiled, warmup_updates=10)
            ctx = DistributedContext(0, 1, 0, torch.device("cpu"))
            trainers[compiled] = Trainer(
                model, JanusObjective(objective), None, None, None, train_cfg, ctx, Path(tmp), {}
            )
        batches = _batches(cfg, trainers[False].objective, steps * rounds + 3)
        start = time.perf_counter()
        for b in batches[:3]:  # compiles for the first shapes (dynamic shapes cover the rest)
            trainers[True].train_step([b])
        compile_s = time.perf_counter() - start
        for b in batches[:3]:
            trainers[False].train_step([b])
        seconds = {False: 0.0, True: 0.0}
        for r in range(rounds):
            chunk = batches[3 + r * steps : 3 + (r + 1) * steps]
            for compiled in (False, True):
                start = time.perf_counter()
                for b in chunk:
                    trainers[compiled].train_step([b])
                seconds[compiled] += time.perf_counter() - start
    n = steps * rounds
    return {
        "eager_s_per_step": round(seconds[False] / n, 4),
        "compiled_s_per_step": round(seconds[True] / n, 4),
        "speedup": round(seconds[False] / seconds[True], 3),
        "first_compile_s": round(compile_s, 1),
    }


def greedy_batch1(sentences: int, rounds: int) -> dict:
    cfg = dataclasses.replace(model_preset("compact"), vocab_size=4000)
    torch.manual_seed(0)
    model = prepare_for_inference(JanusTransformer(cfg).eval())
    rng = np.random.default_rng(1)
    sources = []
    for _ in range(sentences):
        src = torch.randint(5, cfg.vocab_size, (1, int(rng.integers(15, 45))))
        src[0, -1] = cfg.eos_id
        sources.append(src)

    def run() -> list:  # 32 output tokens per sentence, the same for both (a random model rarely stops)
        return [decode(model, s, DecodeConfig(beam=1, max_len_a=0, max_len_b=32)).tokens for s in sources]

    eager_decode = model.decode
    compiled_decode = torch.compile(eager_decode, dynamic=True)
    model.decode = compiled_decode
    start = time.perf_counter()
    compiled_out = run()
    compile_s = time.perf_counter() - start
    model.decode = eager_decode
    same = run() == compiled_out
    seconds = {False: 0.0, True: 0.0}
    tokens = sum(len(t[0]) + 1 for t in compiled_out) * rounds
    for _ in range(rounds):
        for compiled in (False, True):
            model.decode = compiled_decode if compiled else eager_decode
            start = time.perf_counter()
            run()
            seconds[compiled] += time.perf_counter() - start
    return {
        "eager_ms_per_token": round(1000 * seconds[False] / tokens, 3),
        "compiled_ms_per_token": round(1000 * seconds[True] / tokens, 3),
        "speedup": round(seconds[False] / seconds[True], 3),
        "first_compile_s": round(compile_s, 1),
        "same_outputs": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=10, help="sentences decoded per round")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "precision": args.precision,
        "train_step_compact_janus": train_steps(args.precision, args.steps, args.rounds),
        "ar_greedy_batch1_compact": greedy_batch1(args.sentences, args.rounds),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
