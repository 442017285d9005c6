"""Quality and speed of one decoding setting on one test set, measured together."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from janusgen.config import DecodeConfig, to_dict
from janusgen.decoding.settings import describe
from janusgen.decoding.speculative import SpeculativeStats
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.evaluation.metrics import bleu, chrf, rouge
from janusgen.progress import quiet

WARMUP_SENTENCES = 8


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
    # speculative decoding only: tokens emitted per draft-and-verify round, rounds per sentence
    tokens_per_round: float | None = None
    rounds_per_sentence: float | None = None
    # with `rouge`: ROUGE-1/2/L F1 x100 (summarisation, question generation, dialogue)
    rouge1: float | None = None
    rouge2: float | None = None
    rougeL: float | None = None  # noqa: N815 (the metric's own name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    translator: Translator,
    sources: list[str],
    references: list[str],
    cfg: DecodeConfig,
    with_rouge: bool = False,
) -> tuple[EvalResult, list[str]]:
    """Translate `sources` with `cfg`, score against `references` (BLEU, chrF, and with `with_rouge`
    ROUGE-1/2/L); returns the result and the outputs.
    The time covers tokenisation, batching, decoding and detokenisation (what a user waits for), after an
    untimed warm-up on the first sentences."""
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references")
    # untimed warm-up: the first call pays for lazy set-up (the CUDA context and kernel loading on a GPU,
    # oneDNN's kernel choice on a CPU), which no later call does
    translator.generate_batch(sources[:WARMUP_SENTENCES], cfg)
    if translator.device.type == "cuda":
        torch.cuda.synchronize()
    stats = SpeculativeStats() if cfg.mode == "speculative" else None
    start = time.perf_counter()
    with tqdm(total=len(sources), desc="evaluate", unit=" sentences", disable=quiet() or None) as bar:
        outputs = translator.generate_batch(sources, cfg, stats, on_batch=bar.update)
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
        None if stats is None else round(stats.tokens_per_round, 3),
        None if stats is None else round(stats.rounds_per_sentence, 3),
    )
    if with_rouge:
        r = rouge(hyps, references)
        result = replace(result, **{name: round(score.score, 2) for name, score in r.items()})
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
    for r in results:
        if r.tokens_per_round is not None:
            lines.append(
                f"{r.setting}: {r.tokens_per_round:.2f} tokens per round (accepted draft tokens + AR's "
                f"own), {r.rounds_per_sentence:.2f} rounds per sentence"
            )
    for r in results:
        if r.rouge1 is not None:
            lines.append(
                f"{r.setting}: ROUGE-1 {r.rouge1:.2f}  ROUGE-2 {r.rouge2:.2f}  ROUGE-L {r.rougeL:.2f}"
            )
    if results:
        lines.append(f"BLEU: {results[0].bleu_signature}")
        lines.append(f"chrF: {results[0].chrf_signature}")
    return "\n".join(lines)


def evaluate_split(
    checkpoint: Path,
    data: Path,
    split: str,
    cfg: DecodeConfig,
    *,
    limit: int | None = None,
    metric: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    quantize: str = "none",
    json_path: Path | None = None,
    hypotheses_path: Path | None = None,
) -> EvalResult:
    """`janus evaluate`: translate `split` of the prepared folder `data` (its first `limit` pairs) with
    `checkpoint` and score it; metric "rouge" adds ROUGE, "auto" adds it for data prepared with a
    task scored by ROUGE. Writes the result (with its setup) to `json_path` and the outputs to
    `hypotheses_path` when given, both checked before anything is decoded."""
    from janusgen.data.dataset import PairDataset
    from janusgen.data.tasks import TASKS
    from janusgen.fileio import atomic_file, check_writable_folder

    for option, path in (("--json", json_path), ("--hypotheses", hypotheses_path)):
        if path is not None:  # fail now, not after the decoding
            if path.is_dir():
                raise JanusError(f"{option} {path} is a folder; give a file name")
            check_writable_folder(Path(os.path.realpath(path)).parent, f"{option} {path}")
    dataset = PairDataset.open(data, split)
    sources, references = dataset.texts()
    if limit is not None:
        sources, references = sources[:limit], references[:limit]
    with_rouge = metric == "rouge"
    if metric == "auto":
        task_name = (dataset.meta.get("source") or {}).get("task")
        with_rouge = task_name in TASKS and TASKS[task_name].metric == "rouge"
    translator = Translator.load(checkpoint, device, dtype, quantize)
    result, hyps = evaluate(translator, sources, references, cfg, with_rouge)
    if json_path is not None:
        record = {
            **result.to_dict(),
            "checkpoint": str(checkpoint),
            "data": str(data),
            "split": split,
            "decode": to_dict(cfg),
            "device": device,
            "dtype": dtype,
            "quantize": quantize,
        }
        with atomic_file(json_path) as f:
            f.write(json.dumps(record, indent=2) + "\n")
    if hypotheses_path is not None:
        with atomic_file(hypotheses_path) as f:
            f.write("".join(f"{h}\n" for h in hyps))
    return result
