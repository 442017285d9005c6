"""Speculative decoding against AR greedy at batch 1, in one process: identical outputs, speed ratios,
and the tokens per round the speed comes from. The settings take turns sentence by sentence, so that a
change in the machine's load affects them alike.

    python benchmarks/speculative_speed.py --checkpoint runs/janus/best --data work/bible_data --limit 300
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from janusgen.data.batching import pad_sequences
from janusgen.data.dataset import PairDataset
from janusgen.decoding import decode_ar
from janusgen.decoding.api import decode_speculative
from janusgen.decoding.translator import Translator

SETTINGS = {  # name -> one sentence's decoding
    "greedy": lambda model, src: decode_ar(model, src, beam=1),
    "speculative": lambda model, src: decode_speculative(model, src),
    "speculative, redraft every round": lambda model, src: decode_speculative(
        model, src, drafting="every_round"
    ),
    "speculative, fused draft and verify": lambda model, src: decode_speculative(
        model, src, drafting="fused"
    ),
    "speculative, whole draft": lambda model, src: decode_speculative(model, src, block=None),
    **{  # verify at most k draft tokens a round (the default is DEFAULT_BLOCK)
        f"speculative, block {k}": lambda model, src, k=k: decode_speculative(model, src, block=k)
        for k in (2, 8)
    },
}


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
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    settings = {name: SETTINGS[name] for name in ["greedy", *args.settings]}  # greedy: the baseline
    texts = PairDataset.open(args.data, args.split).texts()[0][: args.limit]
    translator = Translator.load(args.checkpoint, dtype=args.dtype)
    tok, model = translator.tokenizer, translator.model
    sources = [pad_sequences([ids], tok.pad_id, suffix=tok.eos_id) for ids in tok.encode(texts)]
    for decode in settings.values():  # warm up
        decode(model, sources[0])
    seconds = dict.fromkeys(settings, 0.0)
    outputs: dict[str, list[list[int]]] = {name: [] for name in settings}
    rounds = dict.fromkeys(settings, 0)
    tokens = 0
    with torch.inference_mode():
        for src in sources:
            for name, decode in settings.items():
                start = time.perf_counter()
                decoded = decode(model, src)
                seconds[name] += time.perf_counter() - start
                outputs[name] += decoded.tokens
                if decoded.stats is not None:
                    rounds[name] += decoded.stats.rounds
            tokens += len(outputs["greedy"][-1]) + 1  # EOS included
    report = {
        "checkpoint": str(args.checkpoint),
        "sentences": len(texts),
        "date": datetime.date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "greedy_s": round(seconds["greedy"], 3),
        "greedy_ms_per_token": round(1e3 * seconds["greedy"] / tokens, 3),
    }
    for name in settings:
        if name == "greedy":
            continue
        same = sum(a == b for a, b in zip(outputs["greedy"], outputs[name], strict=True))
        round_s = seconds[name] / max(rounds[name], 1)
        report[name] = {
            "identical_to_greedy": f"{same}/{len(texts)}",
            "seconds": round(seconds[name], 3),
            "speedup_over_greedy": round(seconds["greedy"] / seconds[name], 3),
            "tokens_per_round": round(tokens / max(rounds[name], 1), 3),
            "rounds_per_sentence": round(rounds[name] / len(texts), 3),
            # what a round costs against a greedy step, and so the tokens a round must emit for 2x
            "ms_per_round": round(1e3 * round_s, 3),
            "tokens_per_round_for_2x": round(2 * round_s * tokens / seconds["greedy"], 2),
        }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
