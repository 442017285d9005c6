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
from collections import defaultdict
from pathlib import Path

import torch

from janusgen.config import DecodeConfig
from janusgen.data.batching import pad_sequences
from janusgen.data.dataset import PairDataset
from janusgen.decoding import decode
from janusgen.decoding.translator import Translator

SETTINGS = {  # name -> one sentence's decoding
    "greedy": lambda model, src: decode(model, src, DecodeConfig(beam=1)),
    "speculative": lambda model, src: decode(model, src, DecodeConfig(mode="speculative")),
    "speculative, redraft every round": lambda model, src: decode(
        model, src, DecodeConfig(mode="speculative"), drafting="every_round"
    ),
    "speculative, fused draft and verify": lambda model, src: decode(
        model, src, DecodeConfig(mode="speculative"), drafting="fused"
    ),
    "speculative, whole draft": lambda model, src: decode(
        model, src, DecodeConfig(mode="speculative"), block=None
    ),
    **{  # verify at most k draft tokens a round (the default is DEFAULT_BLOCK)
        f"speculative, block {k}": lambda model, src, k=k: decode(
            model, src, DecodeConfig(mode="speculative"), block=k
        )
        for k in (2, 8)
    },
}


class PassClock:
    """Times the model's encoder passes, decoder passes (full: no cached content, as a NAR draft; or
    incremental: over the content cache, as a greedy step or a verification) and output projections, by
    wrapping those methods of `model`; `setting` says whose time it is. The rest of a setting's time is its
    own bookkeeping (masks, acceptance, cache roll-back)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.setting = ""
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.rows: dict[tuple[str, str], int] = defaultdict(int)
        encode, decode, logits = model.encode, model.decode, model.logits

        def timed_decode(view, enc, cache=None):  # noqa: ANN001, ANN202
            incremental = cache is not None and cache.positions is not None
            part = "decoder, incremental" if incremental else "decoder, full"
            return self._time(part, view.tokens.shape[1], decode, view, enc, cache)

        model.encode = lambda src: self._time("encoder", src.shape[1], encode, src)
        model.decode = timed_decode
        model.logits = lambda h: self._time("output projection", h.numel() // h.shape[-1], logits, h)

    def _time(self, part: str, rows: int, fn, *args):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        out = fn(*args)
        key = (self.setting, part)
        self.seconds[key] += time.perf_counter() - start
        self.calls[key] += 1
        self.rows[key] += rows
        return out

    def report(self, setting: str, total_s: float) -> dict[str, dict[str, float]]:
        """Seconds, calls, ms and rows per call of each part of `setting`'s time, and the rest."""
        keys = [key for key in self.seconds if key[0] == setting]
        parts = {
            key[1]: {
                "seconds": round(self.seconds[key], 3),
                "calls": self.calls[key],
                "ms_per_call": round(1e3 * self.seconds[key] / self.calls[key], 3),
                "rows_per_call": round(self.rows[key] / self.calls[key], 1),
            }
            for key in keys
        }
        return {**parts, "rest": {"seconds": round(total_s - sum(self.seconds[key] for key in keys), 3)}}


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
    clock = PassClock(model)
    for run in settings.values():  # warm up
        run(model, sources[0])
    seconds = dict.fromkeys(settings, 0.0)
    outputs: dict[str, list[list[int]]] = {name: [] for name in settings}
    rounds = dict.fromkeys(settings, 0)
    tokens = 0
    with torch.inference_mode():
        for src in sources:
            for name, run in settings.items():
                clock.setting = name
                start = time.perf_counter()
                decoded = run(model, src)
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
    report["greedy_time"] = clock.report("greedy", seconds["greedy"])
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
            "time": clock.report(name, seconds[name]),
        }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
