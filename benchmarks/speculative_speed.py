"""Speculative decoding against AR greedy at batch 1, in one process: identical outputs, speed ratio,
and the tokens per round the speed comes from.

    python benchmarks/speculative_speed.py --checkpoint runs/janus/best --data work/bible_data --limit 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from janusgen.data.dataset import PairDataset
from janusgen.decoding.speculative import SpeculativeStats
from janusgen.decoding.translator import Translator


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=300, help="first N sentences (default %(default)s)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    texts = PairDataset.open(args.data, args.split).texts()[0][: args.limit]
    translator = Translator.load(args.checkpoint, dtype=args.dtype)
    translator.generate(texts[:8], mode="speculative")  # warm up
    seconds, outputs = {}, {}
    stats = SpeculativeStats()
    for name, options in (("greedy", {"mode": "ar", "beam": 1}), ("speculative", {"mode": "speculative"})):
        start = time.perf_counter()
        extra = {"stats": stats} if name == "speculative" else {}
        outputs[name] = [translator.generate([t], **options, **extra)[0] for t in texts]  # batch 1
        seconds[name] = time.perf_counter() - start
    same = sum(a == b for a, b in zip(outputs["greedy"], outputs["speculative"], strict=True))
    report = {
        "sentences": len(texts),
        "identical": same,
        "greedy_s": round(seconds["greedy"], 3),
        "speculative_s": round(seconds["speculative"], 3),
        "speedup": round(seconds["greedy"] / seconds["speculative"], 3),
        "tokens_per_round": round(stats.tokens_per_round, 3),
        "rounds_per_sentence": round(stats.rounds_per_sentence, 3),
    }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
