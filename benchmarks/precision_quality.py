"""BLEU and batch-1 latency of a trained checkpoint in float32, int8 (`--quantize int8`) and bfloat16
(where the CPU has native bf16), in one process: what reduced precision costs in quality, and which
NAR setting answers one sentence fastest against AR greedy.

    python benchmarks/precision_quality.py --checkpoint RUN/best --data work/bible_data \
        --out benchmarks/results/precision_quality.json

BLEU: every setting on the test split (`--limit` pairs), batched as `janus evaluate` does. Latency: one
sentence at a time over the first `--latency-sentences` test sentences, every (precision, setting) timed
once per round, `--rounds` rounds interleaved, the median kept, so that a slower moment of a shared
machine hits every cell alike. Ratios are of time in this process: against float32 AR greedy at batch 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from janusgen.bench.common import hardware
from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import label, setting
from janusgen.decoding.translator import Translator
from janusgen.evaluation.evaluate import evaluate
from janusgen.fileio import atomic_file
from janusgen.hardware import detect_hardware

QUALITY_SETTINGS = ("ar_beam_5", "ar_greedy", "nar_t_10_l_3", "nar_t_4_l_3")
BATCH1_SETTINGS = (
    "ar_greedy",
    "nar_t_4_l_3",
    "nar_t_1_l_1",
    "nar_t_2_l_1",
    "nar_t_4_l_1",
    "nar_t_4_l_1_collapse",
    "nar_t_10_l_1_early_stop",
)
BASELINE = ("float32", "ar_greedy")


def precisions() -> dict[str, dict[str, str]]:
    """The `Translator.load` arguments of each precision this CPU runs natively."""
    found = {"float32": {}, "int8": {"quantize": "int8"}}
    if detect_hardware("cpu").cpu_bf16_native:
        found["bfloat16"] = {"dtype": "bfloat16"}
    return found


def batch1_ms(translator: Translator, sources: list[str], setting_id: str) -> float:
    cfg = setting(setting_id)
    start = time.perf_counter()
    for sentence in sources:
        translator.generate_batch([sentence], cfg)
    return 1000 * (time.perf_counter() - start) / len(sources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="prepared data folder (its test split)")
    parser.add_argument("--limit", type=int, default=None, help="first N test pairs for BLEU (default all)")
    parser.add_argument("--latency-sentences", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    sources, references = PairDataset.open(args.data, "test").texts()
    if args.limit:
        sources, references = sources[: args.limit], references[: args.limit]
    translators = {
        name: Translator.load(args.checkpoint, device="cpu", **load) for name, load in precisions().items()
    }

    quality: dict[str, dict[str, float]] = {}
    for name, translator in translators.items():
        for setting_id in dict.fromkeys((*QUALITY_SETTINGS, *BATCH1_SETTINGS)):
            result, _ = evaluate(translator, sources, references, setting(setting_id))
            quality.setdefault(name, {})[setting_id] = result.bleu
            print(f"{name:9} {label(setting_id):28} BLEU {result.bleu:6.2f}", file=sys.stderr)

    latency_sources = sources[: args.latency_sentences]
    for translator in translators.values():  # untimed warm-up of every path
        for setting_id in BATCH1_SETTINGS:
            translator.generate_batch(latency_sources[:2], setting(setting_id))
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, translator in translators.items():
            for setting_id in BATCH1_SETTINGS:
                times.setdefault((name, setting_id), []).append(
                    batch1_ms(translator, latency_sources, setting_id)
                )
    median = {key: statistics.median(values) for key, values in times.items()}
    base = median[BASELINE]

    rows = []
    for (name, setting_id), ms in median.items():
        rows.append(
            {
                "precision": name,
                "id": setting_id,
                "setting": label(setting_id),
                "bleu": quality[name][setting_id],
                "bleu_vs_float32": round(quality[name][setting_id] - quality["float32"][setting_id], 2),
                "batch1_ms": round(ms, 2),
                "speedup_vs_float32_ar_greedy": round(base / ms, 2),
            }
        )
    report = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "test_pairs": len(sources),
        "latency_sentences": len(latency_sources),
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "hardware": hardware(),
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/precision_quality.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "bleu": quality,
        "bleu_loss": {
            name: {s: round(quality["float32"][s] - q[s], 2) for s in QUALITY_SETTINGS}
            for name, q in quality.items()
            if name != "float32"
        },
        "batch1": rows,
    }
    print("| precision | setting | BLEU | Δ vs fp32 | batch-1 ms | speed vs fp32 AR greedy |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['precision']} | {r['setting']} | {r['bleu']:.2f} | {r['bleu_vs_float32']:+.2f} | "
            f"{r['batch1_ms']:.1f} | {r['speedup_vs_float32_ar_greedy']:.2f}x |"
        )
    for name, losses in report["bleu_loss"].items():
        print(
            f"{name}: BLEU lost against float32: "
            + ", ".join(f"{label(s)} {v:+.2f}" for s, v in losses.items())
        )
    if args.out:
        with atomic_file(args.out) as f:
            f.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
