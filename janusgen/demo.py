"""The main job, `janus demo`: build and prepare the Spanish->English Bible, train a small JANUS model
for a bounded time, and translate the test split in both modes, printing BLEU, chrF and speed.

Every step writes into --work and is skipped when its output is already there, so a second run only
evaluates (or finishes an interrupted training run).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from janusgen.config import BibleConfig, PrepareConfig, TrainConfig, model_preset, objective_preset
from janusgen.data.binarized import META_FILE
from janusgen.data.dataset import PairDataset
from janusgen.decoding.translator import Translator, decode_config
from janusgen.evaluation.evaluate import EvalResult, evaluate, format_table

SUMMARY = "summary.json"


@dataclass(frozen=True)
class DemoPreset:
    """What the demo trains: tuned so that 2 CPU cores reach a useful model in about 15 minutes
    (BENCHMARKS.md records the alternatives tried)."""

    vocab_size: int = 4000  # 8000 costs 1.4x more per update here (the vocabulary-sized terms dominate)
    d_model: int = 256
    ffn_dim: int = 1024
    heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 3
    dropout: float = 0.0  # about one epoch in 15 minutes: nothing to regularise yet, and dropout costs time
    max_tokens: int = 2048  # at equal time, twice the updates of 4096 learned faster
    lr: float = 2e-3
    warmup_updates: int = 100
    precision: str = "bf16"  # AMX / AVX-512 bf16 matmuls; the losses are still computed in float32
    # Curriculum: L_AR alone first, at about 40% of the cost of a joint update here, so the AR view gets a
    # cheap start and the NAR/AUX streams join a model that already knows the language (BENCHMARKS.md)
    ar_only_updates: int = 800
    kl_warmup_updates: int = 100

    def model(self):
        return dataclasses.replace(
            model_preset("small"),
            d_model=self.d_model,
            ffn_dim=self.ffn_dim,
            heads=self.heads,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            dropout=self.dropout,
        )

    def objective(self):
        return dataclasses.replace(
            objective_preset("janus"),
            ar_only_updates=self.ar_only_updates,
            kl_warmup_updates=self.kl_warmup_updates,
        )

    def train(self, time_budget_s: float | None, seed: int) -> TrainConfig:
        return TrainConfig(
            max_updates=1_000_000,
            time_budget_s=time_budget_s,
            max_tokens=self.max_tokens,
            lr=self.lr,
            warmup_updates=self.warmup_updates,
            precision=self.precision,
            validate_every=250,
            valid_bleu_sentences=200,
            seed=seed,
            log_every=25,
        )


SETTINGS = {  # evaluated on the test split, in this order; speedups are relative to the first
    "AR beam 5": dict(mode="ar", beam=5),
    "AR greedy": dict(mode="ar", beam=1),
    "NAR T=10 l=3": dict(mode="nar", iterations=10, length_beam=3),
    "NAR T=4 l=3": dict(mode="nar", iterations=4, length_beam=3),
}


def run_demo(
    work: Path,
    time_budget_s: float = 12 * 60,
    preset: DemoPreset = DemoPreset(),
    seed: int = 1,
    limit: int | None = None,
) -> list[EvalResult]:
    from janusgen.data.bible import build_bible_corpus, format_report
    from janusgen.data.prepare import format_report as format_prepared
    from janusgen.data.prepare import prepare
    from janusgen.data.sources import TextFilesSource
    from janusgen.training.trainer import train

    work = Path(work)
    bible, data, run = work / "bible", work / "bible_data", work / "run"
    step = _announce
    if not (bible / "manifest.json").is_file():
        step("1/4 building the Spanish->English Bible corpus from Debian's SWORD packages")
        print(format_report(build_bible_corpus(bible, BibleConfig())))
    else:
        step(f"1/4 corpus already in {bible}")
    if not (data / META_FILE).is_file():
        step(f"2/4 preparing it: SentencePiece vocabulary of {preset.vocab_size}, binarized splits")
        source = TextFilesSource(bible, BibleConfig().source, BibleConfig().target)
        print(format_prepared(prepare(source, data, PrepareConfig(vocab_size=preset.vocab_size))))
    else:
        step(f"2/4 prepared data already in {data}")
    if not (run / SUMMARY).is_file():
        resume = (run / "last").is_dir()
        step(
            f"3/4 training a JANUS model for {time_budget_s / 60:.0f} min on {torch.get_num_threads()} CPU "
            f"thread(s){' (resuming)' if resume else ''}"
        )
        summary = train(
            data,
            run,
            preset.model(),
            preset.objective(),
            preset.train(time_budget_s, seed),
            resume=resume,
            device="cpu",
            resume_overrides={"time_budget_s": time_budget_s},
        )
        (run / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    else:
        step(f"3/4 trained model already in {run}")
    step("4/4 translating the test split in both modes")
    translator = Translator.load(run / "best")
    sources, references = PairDataset.open(data, "test").texts()
    if limit is not None:
        sources, references = sources[:limit], references[:limit]
    results = []
    for name, options in SETTINGS.items():
        result, _ = evaluate(translator, sources, references, decode_config(**options))
        print(f"  {name}: BLEU {result.bleu:.2f}, {result.sentences_per_s:.1f} sentences/s", file=sys.stderr)
        results.append(result)
    report = _report(results, run)
    (work / "demo_results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nSpanish->English Bible, test split ({len(sources)} verses), model {run / 'best'}")
    print(format_table(results, baseline="AR beam 5"))
    return results


def _report(results: list[EvalResult], run: Path) -> dict[str, Any]:
    summary = json.loads((run / SUMMARY).read_text())
    config = json.loads((run / "best" / "config.json").read_text())
    return {
        "training": summary,
        "best_step": config.get("step"),
        "results": [r.to_dict() for r in results],
        "threads": torch.get_num_threads(),
    }


def _announce(text: str) -> None:
    print(f"\n== {text}", file=sys.stderr, flush=True)
