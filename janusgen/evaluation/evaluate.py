"""Quality and speed of one decoding setting on one test set, measured together."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from janusgen.config import DecodeConfig
from janusgen.decoding.translator import Translator
from janusgen.evaluation.metrics import bleu, chrf


@dataclass(frozen=True)
class EvalResult:
    setting: str
    bleu: float
    chrf: float
    sentences: int
    seconds: float
    sentences_per_s: float
    tgt_tokens_per_s: float  # generated tokens (EOS excluded) per second
    bleu_signature: str
    chrf_signature: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(cfg: DecodeConfig) -> str:
    """A short name for a decoding setting, e.g. "AR beam 5" or "NAR T=10 l=3 +rerank"."""
    if cfg.mode == "ar":
        return "AR greedy" if cfg.beam == 1 else f"AR beam {cfg.beam}"
    lengths = f"l={cfg.length_beam}" if cfg.length_offsets is None else f"offsets={list(cfg.length_offsets)}"
    return f"NAR T={cfg.iterations} {lengths}" + (" +rerank" if cfg.rerank else "")


def evaluate(
    translator: Translator, sources: list[str], references: list[str], cfg: DecodeConfig
) -> tuple[EvalResult, list[str]]:
    """Translate `sources` with `cfg`, score against `references`; returns the result and the outputs.
    The time covers tokenisation, batching, decoding and detokenisation (what a user waits for)."""
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references")
    if translator.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    outputs = translator.generate_batch(sources, cfg)
    if translator.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    hyps = [o.text for o in outputs]
    b, c = bleu(hyps, references), chrf(hyps, references)
    tokens = sum(o.tokens for o in outputs)
    result = EvalResult(
        describe(cfg),
        round(b.score, 2),
        round(c.score, 2),
        len(sources),
        round(seconds, 3),
        round(len(sources) / seconds, 2),
        round(tokens / seconds, 1),
        b.signature,
        c.signature,
    )
    return result, hyps


def format_table(results: list[EvalResult], baseline: str | None = None) -> str:
    """Results side by side; with `baseline` (a setting name), speed is also shown relative to it."""
    base = next((r for r in results if r.setting == baseline), None)
    header = f"{'setting':<26}{'BLEU':>7}{'chrF':>7}{'sent/s':>9}{'tok/s':>9}" + (
        f"{'speedup':>9}" if base else ""
    )
    lines = [header, "-" * len(header)]
    for r in results:
        row = (
            f"{r.setting:<26}{r.bleu:>7.2f}{r.chrf:>7.2f}{r.sentences_per_s:>9.1f}{r.tgt_tokens_per_s:>9.0f}"
        )
        if base:
            row += f"{base.seconds / r.seconds:>8.2f}x"
        lines.append(row)
    if results:
        lines.append(f"BLEU: {results[0].bleu_signature}")
        lines.append(f"chrF: {results[0].chrf_signature}")
    return "\n".join(lines)
