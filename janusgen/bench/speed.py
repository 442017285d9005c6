"""`janus bench speed`: batch-1 latency and batch-64 throughput of every setting of a quality bench's
systems on the same test sentences, in one process, as speedups over AR beam 5 (SPEED_BASELINE).

It times the checkpoints that `out/quality.json` names, so it runs after `janus bench quality` on the same
--out.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import Path
from typing import Any

import torch

from janusgen.bench.budgets import settings_for
from janusgen.bench.common import QUALITY, SPEED, _checkpoint, _read_path, _say, hardware
from janusgen.config import DecodeConfig
from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import SPEED_BASELINE, id_of, label, setting
from janusgen.decoding.translator import Translator
from janusgen.fileio import atomic_file, read_json
from janusgen.hardware import pick_device


def run_speed_bench(
    out: Path,
    sentences: int = 200,
    batch_size: int = 64,
    device: str = "auto",
    quantize: str = "none",
) -> dict[str, Any]:
    """Time every setting of every system in `out/quality.json` on the first `sentences` test
    sentences: one at a time (latency) and `batch_size` at a time (throughput), with the weights as
    `quantize` says (none, int8). Writes `out/speed.json`."""
    out = Path(out)
    quality_file = out / QUALITY
    if not quality_file.is_file():
        raise FileNotFoundError(f"{quality_file}: run `janus bench quality --out {out}` first")
    quality = read_json(quality_file)
    sources, _ = PairDataset.open(_read_path(out, quality["data"]), "test").texts()
    sources = sources[:sentences]
    rows = []
    for system, entry in quality["systems"].items():
        translator = Translator.load(
            _checkpoint(out, system, entry), device=str(pick_device(device)), quantize=quantize
        )
        bleu_of = {id_of(r): r["bleu"] for r in entry["results"]}
        for setting_id in settings_for(system):
            cfg, name = setting(setting_id), label(setting_id)
            latency = _seconds_per_call(translator, [[s] for s in sources], cfg)
            per_batch = [sources[i : i + batch_size] for i in range(0, len(sources), batch_size)]
            throughput = len(sources) / (_seconds_per_call(translator, per_batch, cfg) * len(per_batch))
            rows.append(
                {
                    "system": system,
                    "id": setting_id,
                    "setting": name,
                    "bleu": bleu_of.get(setting_id),
                    "latency_ms": round(1000 * latency, 2),
                    "sentences_per_s": round(throughput, 2),
                }
            )
            _say(f"  {system} {name}: {1000 * latency:.1f} ms/sentence at batch 1, {throughput:.1f} sent/s")
    base = next((r for r in rows if r["id"] == SPEED_BASELINE and r["system"] == "janus"), None)
    base = base or next((r for r in rows if r["id"] == SPEED_BASELINE), None)
    for r in rows:
        if base:
            r["latency_speedup"] = round(base["latency_ms"] / r["latency_ms"], 2)
            r["throughput_speedup"] = round(r["sentences_per_s"] / base["sentences_per_s"], 2)
    report = {
        "sentences": len(sources),
        "batch_size": batch_size,
        "quantize": quantize,
        "baseline": f"{base['system']} {base['setting']}" if base else None,
        "hardware": hardware(),
        "date": datetime.date.today().isoformat(),
        "rows": rows,
    }
    with atomic_file(out / SPEED) as f:
        f.write(json.dumps(report, indent=2) + "\n")
    return report


def _seconds_per_call(translator: Translator, batches: list[list[str]], cfg: DecodeConfig) -> float:
    """Mean wall time of `translator.generate_batch` over `batches`, each decoded as one batch."""
    whole = dataclasses.replace(cfg, max_tokens=1 << 30)  # never split a batch: its size is the point
    translator.generate_batch(batches[0], whole)  # warm-up: first-call allocations and kernel choice
    sync = torch.cuda.synchronize if translator.device.type == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    for batch in batches:
        translator.generate_batch(batch, whole)
    sync()
    return (time.perf_counter() - start) / len(batches)
