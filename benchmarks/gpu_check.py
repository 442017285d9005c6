"""One command that shows the package works, and works fast, on a GPU (under 8 minutes on one H100):

1. the device tests (tests/test_devices.py, tests/model/test_attention.py) on CUDA;
2. FlexAttention against the dense masks, values and gradients (it has no backward on a CPU);
3. training throughput of `ar` and `janus` for `paper-iwslt` and `transformer-base` in bf16 at 4k and
   8k tokens per batch: target tokens/s, model FLOPs utilisation (FLOPs counted by PyTorch over the
   device's dense bf16 peak), peak memory, and janus's step time over ar's;
4. a 3-minute JANUS training run on a synthetic translation task (reverse a sentence of 10-40 words),
   whose loss must fall;
5. decoding speed of that model at batch 1 and 64: AR greedy, beam 5, NAR T=4 and T=10 (length beam
   3), speculative, each as a speedup over beam 5.
It writes one JSON (benchmarks/results/gpu_check_<device>.json by default) and prints a table with the
issue's goals, met or not. `--dry-run` runs the same code on the CPU with the `tiny` preset in seconds
(CI runs it, so this script cannot rot).

    python benchmarks/gpu_check.py            # on a GPU machine
    python benchmarks/gpu_check.py --dry-run  # anywhere
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from janusgen.config import PrepareConfig, decode_config
from janusgen.data.batching import SampledBatch
from janusgen.data.prepare import prepare
from janusgen.data.sources import TextFilesSource
from janusgen.decoding.translator import Translator
from janusgen.model import attention
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.presets import model_preset, objective_preset
from janusgen.training.config import TrainConfig
from janusgen.training.distributed import DistributedContext
from janusgen.training.loader import ReadyBatch
from janusgen.training.recipe import train
from janusgen.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
# dense bf16 tensor-core peak FLOP/s by device name (vendor data sheets); MFU is reported against it
PEAK_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
}
PEAK_BF16 |= {"A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
GOALS = {"mfu_paper_iwslt_janus": 0.30, "janus_over_ar_step": 2.5, "nar_t10_over_beam5_batch1": 2.0}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run measures: the GPU plan, or the dry run's few seconds of the same code on a CPU."""

    device: str
    presets: tuple[str, ...]
    max_tokens: tuple[int, ...]
    warmup_steps: int
    timed_steps: int
    train_seconds: float | None  # the training run's time budget (None: `train_updates` updates)
    train_updates: int
    train_preset: str
    decode_sentences: int
    run_tests: bool
    precision: str
    vocab_size: int  # of the throughput models
    words: tuple[int, int]  # sentence lengths of the training task


GPU_PLAN = Plan(
    device="cuda",
    presets=("paper-iwslt", "transformer-base"),
    max_tokens=(4096, 8192),
    warmup_steps=5,
    timed_steps=10,
    train_seconds=180.0,
    train_updates=10_000_000,
    train_preset="small",
    decode_sentences=200,
    run_tests=True,
    precision="bf16",
    vocab_size=10_000,
    words=(10, 40),
)
DRY_PLAN = dataclasses.replace(
    GPU_PLAN,
    device="cpu",
    presets=("tiny",),
    max_tokens=(512,),
    warmup_steps=1,
    timed_steps=2,
    train_seconds=None,
    train_updates=40,
    train_preset="tiny",
    decode_sentences=8,
    run_tests=False,
    precision="fp32",
    vocab_size=1000,
    words=(3, 10),
)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


# ------------------------------------------------------------------------------------------------ tests


def run_device_tests() -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "tests/test_devices.py",
        "tests/model/test_attention.py",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return {"passed": proc.returncode == 0, "summary": " | ".join(tail)}


def flex_check(device: torch.device) -> dict[str, Any]:
    """FlexAttention (the relative-bias views) against the dense masks: outputs and gradients."""
    from janusgen.model.layout import masked_view

    def run(fast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        attention.FAST_PATH_DEVICES = ("cuda", "cpu") if fast else ()
        torch.manual_seed(0)
        cfg = dataclasses.replace(model_preset("small"), vocab_size=1000, dropout=0.0)
        model = JanusTransformer(cfg).to(device).train()
        g = torch.Generator().manual_seed(0)
        src = torch.randint(5, 1000, (8, 40), generator=g).to(device)
        tgt = torch.randint(5, 1000, (8, 36), generator=g)
        tgt[:, 0], tgt[:, -1] = cfg.bos_id, cfg.eos_id
        masked = torch.rand(tgt.shape, generator=g) < 0.5
        masked[:, 0] = masked[:, -1] = False
        view = masked_view(tgt, masked, cfg.pad_id, cfg.mask_id).to(device)
        enc = model.encode(src)
        hidden = model.decode(view, enc)
        hidden.float().square().mean().backward()
        return hidden.detach().float(), {
            n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None
        }

    saved = attention.FAST_PATH_DEVICES
    attention.FLEX_MIN_SCORES, min_scores = 1, attention.FLEX_MIN_SCORES
    try:
        dense_out, dense_grads = run(False)
        if device.type == "cpu":  # FlexAttention has no backward on a CPU: compare the dense path with itself
            fast_out, fast_grads = dense_out, dense_grads
        else:
            fast_out, fast_grads = run(True)
    finally:
        attention.FAST_PATH_DEVICES, attention.FLEX_MIN_SCORES = saved, min_scores
    grad_error = max(
        (fast_grads[n] - g).abs().max().item() / (g.abs().max().item() + 1e-12)
        for n, g in dense_grads.items()
    )
    return {
        "used": not attention._FLEX_BROKEN and device.type == "cuda",
        "fallback_reason": attention._FLEX_BROKEN[0] if attention._FLEX_BROKEN else None,
        "max_abs_output_difference": (fast_out - dense_out).abs().max().item(),
        "max_relative_gradient_difference": grad_error,
    }


# ------------------------------------------------------------------------------------------ throughput


def synthetic_batch(cfg, max_tokens: int, objective: JanusObjective, rng: np.random.Generator, seed: int):
    """A batch of pairs of 10-60 tokens (IWSLT-like), as many as fit `max_tokens` padded tokens."""
    length = int(rng.integers(10, 61))
    rows = max(1, max_tokens // (length + 2))
    src = torch.randint(5, cfg.vocab_size, (rows, length + 1))
    tgt = torch.randint(5, cfg.vocab_size, (rows, length + 2))
    src[:, -1], tgt[:, 0], tgt[:, -1] = cfg.eos_id, cfg.bos_id, cfg.eos_id
    generator = torch.Generator().manual_seed(seed)
    inputs = objective.prepare(src, tgt, None, cfg, generator)
    return ReadyBatch(SampledBatch(0, seed, np.arange(rows)), seed, inputs)


def throughput(plan: Plan, device: torch.device, out: Path) -> list[dict[str, Any]]:
    rows = []
    peak = peak_flops(device)
    for preset in plan.presets:
        cfg = dataclasses.replace(model_preset(preset), vocab_size=plan.vocab_size)
        for max_tokens in plan.max_tokens:
            for name in ("ar", "janus"):
                torch.manual_seed(0)
                objective = JanusObjective(objective_preset(name), seed=0)
                model = JanusTransformer(cfg).to(device)
                train_cfg = TrainConfig(precision=plan.precision, warmup_updates=10, seed=0)
                ctx = DistributedContext(0, 1, 0, device)
                trainer = Trainer(model, objective, None, None, None, train_cfg, ctx, out / "throughput", {})
                rng = np.random.default_rng(0)
                batches = [
                    synthetic_batch(cfg, max_tokens, objective, rng, i)
                    for i in range(plan.warmup_steps + plan.timed_steps + 1)
                ]
                for b in batches[: plan.warmup_steps]:
                    trainer.train_step([b])
                with FlopCounterMode(display=False) as counter:
                    trainer.train_step([batches[plan.warmup_steps]])
                flops_per_token = counter.get_total_flops() / batches[plan.warmup_steps].inputs.target_tokens
                timed = batches[plan.warmup_steps + 1 :]
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                _sync(device)
                start = time.perf_counter()
                for b in timed:
                    trainer.train_step([b])
                _sync(device)
                seconds = time.perf_counter() - start
                tokens = sum(b.inputs.target_tokens for b in timed)
                achieved = flops_per_token * tokens / seconds
                row = {
                    "preset": preset,
                    "objective": name,
                    "max_tokens": max_tokens,
                    "parameters_M": round(model.num_parameters() / 1e6, 1),
                    "tgt_tokens_per_s": round(tokens / seconds),
                    "s_per_update": round(seconds / len(timed), 4),
                    "tflops": round(achieved / 1e12, 2),
                    "mfu": None if peak is None else round(achieved / peak, 3),
                    "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                    if device.type == "cuda"
                    else None,
                }
                rows.append(row)
                _say(f"  {preset} {name} {max_tokens}: {row['tgt_tokens_per_s']} tok/s, MFU {row['mfu']}")
                del trainer, model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------ training + decoding


def synthetic_corpus(folder: Path, sizes: dict[str, int], words: tuple[int, int], seed: int = 0) -> Path:
    """Reverse a sentence of `words` (10-40) words over a 200-word vocabulary: learnable in minutes, with
    the lengths of real sentences."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(200)]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        src, tgt = [], []
        for _ in range(n):
            sentence = [rng.choice(vocabulary) for _ in range(rng.randint(*words))]
            src.append(" ".join(sentence))
            tgt.append(" ".join(reversed(sentence)).upper())
        (folder / f"{split}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (folder / f"{split}.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return folder


def train_and_decode(
    plan: Plan, device: torch.device, work: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sizes = (
        {"train": 20_000, "valid": 200, "test": plan.decode_sentences}
        if plan.device == "cuda"
        else {"train": 400, "valid": 20, "test": plan.decode_sentences}
    )
    text = synthetic_corpus(work / "text", sizes, plan.words)
    data = work / "data"
    prepare(
        TextFilesSource(text, "src", "tgt"),
        data,
        PrepareConfig(vocab_size=500 if plan.device == "cuda" else 200),
    )
    cfg = TrainConfig(
        max_updates=plan.train_updates,
        time_budget_s=plan.train_seconds,
        max_tokens=8192 if plan.device == "cuda" else 512,
        lr=1e-3,
        warmup_fraction=0.1,
        log_every=20 if plan.device == "cuda" else 1,
        validate_every=1_000_000,
        valid_bleu_sentences=0,
        precision=plan.precision,
    )
    model_cfg = dataclasses.replace(model_preset(plan.train_preset), dropout=0.0)
    summary = train(data, work / "run", model_cfg, objective_preset("janus"), cfg, device=plan.device)
    losses = [
        json.loads(x)["loss"] for x in (work / "run" / "log.jsonl").read_text().splitlines() if '"train"' in x
    ]
    training = {
        "updates": summary["step"],
        "seconds": round(summary["elapsed_s"], 1),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "loss_fell": losses[-1] < losses[0],
    }
    _say(f"  trained {summary['step']} updates; loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    translator = Translator.load(work / "run" / "last", device=str(device), dtype="auto")
    sources = (text / "test.src").read_text().splitlines()[: plan.decode_sentences]
    settings = {
        "AR beam 5": {"mode": "ar", "beam": 5},
        "AR greedy": {"mode": "ar", "beam": 1},
        "NAR T=4 l=3": {"mode": "nar", "iterations": 4, "length_beam": 3},
        "NAR T=10 l=3": {"mode": "nar", "iterations": 10, "length_beam": 3},
        "speculative": {"mode": "speculative"},
    }
    rows = []
    for name, options in settings.items():
        dcfg = decode_config(**options, max_tokens=1 << 30)
        translator.generate_batch(sources[:8], dcfg)  # warm-up
        row = {"setting": name}
        for batch in (1, 64):
            groups = [sources[i : i + batch] for i in range(0, len(sources), batch)]
            _sync(device)
            start = time.perf_counter()
            for group in groups:
                translator.generate_batch(group, dcfg)
            _sync(device)
            row[f"batch_{batch}_sent_per_s"] = round(len(sources) / (time.perf_counter() - start), 2)
        rows.append(row)
    base = rows[0]
    for row in rows:
        for batch in (1, 64):
            key = f"batch_{batch}_sent_per_s"
            row[f"batch_{batch}_speedup"] = round(row[key] / base[key], 2)
    return training, rows


# ---------------------------------------------------------------------------------------------- report


def goals(report: dict[str, Any]) -> dict[str, Any]:
    def find(preset: str, objective: str, tokens: int) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in report["throughput"]
                if (r["preset"], r["objective"], r["max_tokens"]) == (preset, objective, tokens)
            ),
            None,
        )

    preset, tokens = report["plan"]["presets"][0], report["plan"]["max_tokens"][-1]
    janus, ar = find(preset, "janus", tokens), find(preset, "ar", tokens)
    nar = next(r for r in report["decoding"] if r["setting"] == "NAR T=10 l=3")
    values = {
        "mfu_paper_iwslt_janus": janus["mfu"],
        "janus_over_ar_step": round(janus["s_per_update"] / ar["s_per_update"], 2),
        "nar_t10_over_beam5_batch1": nar["batch_1_speedup"],
    }
    met = {
        "mfu_paper_iwslt_janus": values["mfu_paper_iwslt_janus"] is not None
        and values["mfu_paper_iwslt_janus"] >= GOALS["mfu_paper_iwslt_janus"],
        "janus_over_ar_step": values["janus_over_ar_step"] <= GOALS["janus_over_ar_step"],
        "nar_t10_over_beam5_batch1": values["nar_t10_over_beam5_batch1"]
        >= GOALS["nar_t10_over_beam5_batch1"],
    }
    return {name: {"value": values[name], "goal": GOALS[name], "met": met[name]} for name in GOALS}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"device: {report['device']}  torch {report['torch']}  ({report['date']})"]
    if report["tests"] is not None:
        passed = "passed" if report["tests"]["passed"] else "FAILED"
        lines.append(f"device tests: {passed} ({report['tests']['summary']})")
    flex = report["flex"]
    used = "used" if flex["used"] else "not used"
    lines.append(
        f"FlexAttention: {used}; output diff {flex['max_abs_output_difference']:.2e}, "
        f"gradient diff {flex['max_relative_gradient_difference']:.2e}"
    )
    header = ("preset", "objective", "tokens", "tok/s", "s/upd", "TFLOP/s", "MFU", "mem GB")
    lines.append(
        "".join(f"{h:<18}" if i == 0 else f"{h:<10}" if i == 1 else f"{h:>9}" for i, h in enumerate(header))
    )
    for r in report["throughput"]:
        mfu = "-" if r["mfu"] is None else f"{r['mfu']:.2f}"
        mem = "-" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f}"
        lines.append(
            f"{r['preset']:<18}{r['objective']:<10}{r['max_tokens']:>9}{r['tgt_tokens_per_s']:>9}{r['s_per_update']:>9.3f}"
            f"{r['tflops']:>9.2f}{mfu:>9}{mem:>9}"
        )
    t = report["training"]
    loss = f"loss {t['first_loss']:.3f} -> {t['last_loss']:.3f}"
    lines.append(f"training: {t['updates']} updates in {t['seconds']} s, {loss}")
    lines.append(f"{'setting':<16}{'batch 1 sent/s':>16}{'speedup':>9}{'batch 64 sent/s':>17}{'speedup':>9}")
    for r in report["decoding"]:
        lines.append(
            f"{r['setting']:<16}{r['batch_1_sent_per_s']:>16}{r['batch_1_speedup']:>8}x{r['batch_64_sent_per_s']:>17}{r['batch_64_speedup']:>8}x"
        )
    for name, g in report["goals"].items():
        lines.append(f"goal {name}: {g['value']} (goal {g['goal']}): {'met' if g['met'] else 'NOT met'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="the same code on the CPU, tiny preset, seconds"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="the JSON report (default benchmarks/results/)"
    )
    parser.add_argument("--skip-tests", action="store_true", help="do not run the device tests first")
    args = parser.parse_args()
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    device = torch.device(plan.device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _say("== device tests")
        tests = run_device_tests() if plan.run_tests and not args.skip_tests else None
        _say("== FlexAttention")
        flex = flex_check(device)
        _say("== training throughput")
        rows = throughput(plan, device, work)
        _say("== a short training run, then decoding")
        training, decoding = train_and_decode(plan, device, work)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    report = {
        "device": name,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "plan": dataclasses.asdict(plan),
        "tests": tests,
        "flex": flex,
        "throughput": rows,
        "training": training,
        "decoding": decoding,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report["goals"] = goals(report)
    slug = "dry_run" if args.dry_run else name.lower().replace(" ", "_")
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu_check_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"written {out}; {report['seconds']} s")
    ok = training["loss_fell"] and (tests is None or tests["passed"]) and math.isfinite(training["last_loss"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
