"""BLEU and speed of one checkpoint decoded in float32 and in bfloat16, alternating, in one process.

python benchmarks/decode_dtype.py --checkpoint work/run/best --data work/bible_data --limit 400
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from janusgen.data.dataset import PairDataset
from janusgen.decoding.translator import Translator
from janusgen.evaluation.metrics import bleu

MODES = {"AR beam 5": dict(mode="ar", beam=5), "NAR T=10 l=3": dict(mode="nar", iterations=10, length_beam=3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sources, references = PairDataset.open(args.data, "test").texts()
    sources, references = sources[: args.limit], references[: args.limit]
    for round_ in range(args.rounds):
        for dtype in ("float32", "bfloat16"):
            translator = Translator.load(args.checkpoint, dtype=dtype)
            for name, options in MODES.items():
                start = time.perf_counter()
                hypotheses = translator.generate(sources, **options)
                seconds = time.perf_counter() - start
                score = bleu(hypotheses, references).score
                speed = len(sources) / seconds
                print(f"round {round_} {dtype:8} {name}: BLEU {score:.2f}, {speed:.1f} sentences/s")


if __name__ == "__main__":
    main()
