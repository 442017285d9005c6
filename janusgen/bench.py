"""`janus bench quality` and `janus bench speed`: the paper's claims, measured side by side.

quality: train `ar`, `cmlm` and `janus` with the same model, data, batches, seed and number of updates,
evaluate each on the test split in every decoding setting it supports, and test the claims with
sacreBLEU's paired bootstrap. speed: batch-1 latency and batch-64 throughput of every setting on the
same test sentences, in one process, as speedups over AR beam 5.

Everything is written under --out and every finished step is skipped on a second run, so an
interrupted bench resumes where it stopped (an interrupted training run resumes from its `last`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from janusgen.checkpoint import CONFIG_FILE
from janusgen.config import (
    DecodeConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
    from_dict,
    model_preset,
    objective_preset,
)
from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import SPEED_BASELINE, id_of, label, setting
from janusgen.decoding.translator import Translator
from janusgen.demo import DemoPreset
from janusgen.errors import JanusError
from janusgen.evaluation.evaluate import EvalResult, evaluate
from janusgen.evaluation.significance import PairedBootstrap, paired_bootstrap
from janusgen.hardware import pick_device
from janusgen.training.trainer import resume_point, train

SYSTEMS = ("ar", "cmlm", "janus")
QUALITY = "quality.json"
SPEED = "speed.json"
PLOT = "valid_bleu.png"


@dataclass(frozen=True)
class Budget:
    """One comparison: the model, the training options (updates included) and the three objectives."""

    name: str
    model: ModelConfig
    train: TrainConfig
    objectives: dict[str, ObjectiveConfig]


def cpu_budget(updates: int, seed: int) -> Budget:
    """The demo's model and options (the `cpu` recipe), JANUS with the paper's loss (the claims are the
    paper's: the recipe's no-KL variant is an ablation, `--janus-option kl_ar_aux=0 ...`) after the
    recipe's AR-only half, the KLs ramped in over the next 7% (as the 1,500-update benches of 2026-11-21:
    800 AR-only updates, a 100-update ramp); fractions are of the updates here."""
    demo = DemoPreset()
    train_cfg = dataclasses.replace(demo.train(None, seed), max_updates=updates, keep_last=1)
    paper = objective_preset("janus")
    janus = dataclasses.replace(
        paper, ar_only_fraction=demo.objective().ar_only_fraction, kl_warmup_fraction=0.07
    )
    objectives = {"ar": objective_preset("ar"), "cmlm": objective_preset("cmlm"), "janus": janus}
    return Budget("cpu", demo.model(), train_cfg, objectives)


def gpu_budget(updates: int, seed: int) -> Budget:
    """The paper's IWSLT setting: `paper-iwslt` (the authors' model exactly: 6+6 layers, d512, post-norm,
    BERT init, dropout 0.3), 8k-token batches (theirs: 4,096 on each of 2 GPUs), and JANUS encoding the
    source once per view as their release does (each view its own dropout)."""
    train_cfg = TrainConfig(
        max_updates=updates,
        max_tokens=8192,
        lr=5e-4,
        warmup_updates=4000,
        validate_every=1000,
        valid_bleu_sentences=500,
        seed=seed,
        log_every=100,
        keep_last=1,
    )
    model = model_preset("paper-iwslt")
    objectives = {name: objective_preset(name) for name in SYSTEMS}
    objectives["janus"] = dataclasses.replace(objectives["janus"], encode_per_view=True)
    return Budget("gpu", model, train_cfg, objectives)


def cpu_long_budget(updates: int, seed: int) -> Budget:
    """The cpu budget at 4x its updates (6,000 by default: about 2.5 hours per JANUS run on 2 cores), for
    the question the short one cannot answer: does the AR gap close once NAR/AUX are good teachers? Every
    finished step is kept, so it can be run an hour at a time: run the same command again to continue."""
    return dataclasses.replace(cpu_budget(updates, seed), name="cpu-long")


BUDGETS = {"cpu": cpu_budget, "cpu-long": cpu_long_budget, "gpu": gpu_budget}
DEFAULT_UPDATES = {"cpu": 1500, "cpu-long": 6000, "gpu": 50000}  # per system, when --updates is not given
EQUAL_TIME_MAX_UPDATES = 10_000_000  # with --time-budget the clock stops training, not the update count


def settings_for(system: str) -> tuple[str, ...]:
    """The ids (decoding.settings) of the settings a system was trained for: AR for ar, NAR for cmlm,
    both (+rerank) for janus."""
    ar = ("ar_beam_5", "ar_greedy")
    nar = ("nar_t_1_l_3", "nar_t_2_l_3", "nar_t_4_l_3", "nar_t_10_l_3")
    if system == "ar":
        return ar
    if system == "cmlm":
        return nar
    return ar + nar + tuple(f"{sid}_rerank" for sid in nar)


def hardware() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _outputs_file(out: Path, system: str, setting_id: str) -> Path:
    """Where a bench in `out` keeps a setting's outputs (one line each); its scores sit beside, as .json."""
    return out / "outputs" / f"{system}.{setting_id}.txt"


def _stored_path(out: Path, path: Path) -> str:
    """`path` as a report in `out` stores it: relative to `out`, so that the folder can be moved or
    copied to another machine (.. where `path` lies outside it)."""
    return os.path.relpath(Path(path).resolve(), Path(out).resolve())


def _read_path(out: Path, stored: str) -> Path:
    """A path a report in `out` stored: relative to `out` (absolute in reports of older versions)."""
    return Path(stored) if Path(stored).is_absolute() else Path(out) / stored


def _checkpoint(out: Path, system: str, entry: dict[str, Any]) -> Path:
    """The checkpoint a system of the report in `out` was evaluated with; where an older report's
    absolute path is gone (the folder was moved), the one the bench trains: `out/{system}/last`."""
    stored = _read_path(out, entry["checkpoint"])
    moved = Path(out) / system / "last"
    return moved if not stored.exists() and moved.exists() else stored


def _read_outputs(text: Path) -> list[str]:
    return text.read_text(encoding="utf-8").split("\n")[:-1]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- quality


def system_setup(
    system: str, data: Path, budget: Budget, distilled: Path | None, time_budget_s: float | None
) -> tuple[Path, TrainConfig]:
    """The data and training options of one system: with `distilled` (a `janus distill` folder of `data`)
    cmlm learns the teacher's outputs and janus its NAR/AUX views on them, its AR view on the references,
    while ar stays on `data`; with `time_budget_s` every system trains for that long (equal time) instead
    of for the budget's updates (equal updates)."""
    cfg = budget.train
    if time_budget_s is not None:
        cfg = dataclasses.replace(cfg, max_updates=EQUAL_TIME_MAX_UPDATES, time_budget_s=time_budget_s)
    if distilled is None or system == "ar":
        return Path(data), cfg
    if system == "janus":
        objective = budget.objectives["janus"]
        if objective.kl_ar_nar + objective.kl_ar_aux > 0:
            raise JanusError(
                "--distilled: janus's AR view learns the references and its NAR/AUX views the teacher's "
                "outputs, so the KLs between them have no common target; add --janus-option kl_ar_nar=0 "
                "--janus-option kl_ar_aux=0"
            )
        cfg = dataclasses.replace(cfg, ar_targets="references")
    return Path(distilled), cfg


def check_distilled(data: Path, distilled: Path) -> None:
    """`distilled` must be a `janus distill` folder with the test split of `data` (the bench evaluates on
    `data`'s)."""
    from janusgen.fileio import sha256_file

    meta = PairDataset.open(distilled, "test").meta
    if "distillation" not in meta:
        raise JanusError(f"--distilled {distilled}: not a folder written by `janus distill`")
    for name in ("test.src.txt", "test.tgt.txt"):
        if sha256_file(Path(distilled) / name) != sha256_file(Path(data) / name):
            raise JanusError(
                f"--distilled {distilled}: its {name} differs from {data}'s: distil --data {data}"
            )


def run_quality_bench(
    data: Path,
    out: Path,
    budget: Budget,
    systems: tuple[str, ...] = SYSTEMS,
    device: str = "auto",
    limit: int | None = None,
    bootstrap_samples: int = 1000,
    distilled: Path | None = None,
    time_budget_s: float | None = None,
    only_settings: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Train each system (or resume it), evaluate it on the test split, test the claims; writes
    `out/quality.json`, the outputs under `out/outputs/` and the validation-BLEU plot. `distilled` and
    `time_budget_s`: see `system_setup`; `only_settings`: evaluate only these setting ids (of those each
    system was trained for)."""
    out = Path(out)
    if only_settings is not None:
        known = {sid for system in SYSTEMS for sid in settings_for(system)}
        unknown = sorted(set(only_settings) - known)
        if unknown:
            raise JanusError(
                f"--settings {' '.join(unknown)}: unknown; choose from {', '.join(sorted(known))}"
            )
    if distilled is not None:
        check_distilled(data, distilled)
    sources, references = PairDataset.open(data, "test").texts()
    if limit is not None:
        sources, references = sources[:limit], references[:limit]
    report: dict[str, Any] = {
        "budget": budget.name,
        "data": _stored_path(out, data),  # relative to out, as every path a report stores
        "distilled": None if distilled is None else _stored_path(out, distilled),
        "time_budget_s": time_budget_s,  # equal time; None: equal updates
        "test_sentences": len(sources),
        "model": dataclasses.asdict(budget.model),
        "train": dataclasses.asdict(budget.train),
        "date": datetime.date.today().isoformat(),
        "systems": {},
    }
    hyps: dict[tuple[str, str], list[str]] = {}
    for system in systems:
        run = out / system
        summary_file = run / "summary.json"
        system_data, train_cfg = system_setup(system, data, budget, distilled, time_budget_s)
        _check_same_setup(run, budget, system, train_cfg)
        if summary_file.is_file():
            _say(f"== {system}: trained model already in {run}")
        else:
            amount = (
                f"{train_cfg.max_updates} updates"
                if time_budget_s is None
                else f"{time_budget_s / 60:.0f} minutes"
            )
            _say(f"== {system}: training {amount} ({budget.name} budget) on {system_data}")
            summary = train(
                system_data,
                run,
                budget.model,
                budget.objectives[system],
                train_cfg,
                resume=resume_point(run) is not None,
                overwrite=resume_point(run) is None,  # killed before its first checkpoint: afresh
                device=device,
            )
            summary_file.write_text(json.dumps(summary, indent=2) + "\n")
        translator = Translator.load(run / "last", device=str(pick_device(device)))
        entry = {
            "data": _stored_path(out, system_data),
            "ar_targets": train_cfg.ar_targets,
            "objective": dataclasses.asdict(budget.objectives[system]),
            "training": json.loads(summary_file.read_text()),
            "checkpoint": _stored_path(out, run / "last"),
            "hardware": hardware(),
            "results": [],
        }
        for setting_id in settings_for(system):
            if only_settings is not None and setting_id not in only_settings:
                continue
            result, outputs = _evaluate_once(translator, sources, references, setting_id, out, system)
            _say(f"  {system} {result.setting}: BLEU {result.bleu:.2f}, chrF {result.chrf:.2f}")
            entry["results"].append({"id": setting_id, **result.to_dict()})
            hyps[system, setting_id] = outputs
        report["systems"][system] = entry
    report["significance"] = [test.to_dict() for test in _claim_tests(hyps, references, bootstrap_samples)]
    (out / QUALITY).write_text(json.dumps(report, indent=2) + "\n")
    plot_valid_bleu(out, systems)
    return report


def _check_same_setup(run: Path, budget: Budget, system: str, train_cfg: TrainConfig) -> None:
    """Refuse to reuse (or resume) a run of `--out` trained with another model, objective, update count,
    time budget or AR targets: its numbers would be reported under this bench's settings."""
    config_file = run / "last" / CONFIG_FILE
    if not config_file.is_file():
        return
    saved = json.loads(config_file.read_text())
    where = str(config_file)
    # read back through the config classes: a field added since the run was trained takes its default
    saved["model"] = dataclasses.asdict(from_dict(ModelConfig, saved["model"], where=where))
    saved["objective"] = dataclasses.asdict(from_dict(ObjectiveConfig, saved["objective"], where=where))
    model = dict(dataclasses.asdict(budget.model), vocab_size=saved["model"]["vocab_size"])  # from the data
    wanted = {"model": model, "objective": dataclasses.asdict(budget.objectives[system])}
    saved_train = saved.get("train", {})
    for key in ("time_budget_s", "max_updates", "ar_targets"):
        if saved_train.get(key, getattr(TrainConfig(), key)) != getattr(train_cfg, key):
            raise JanusError(
                f"{config_file}: the {system} run there was trained with {key} "
                f"{saved_train.get(key)!r}, this bench asks for {getattr(train_cfg, key)!r}; use a new --out"
            )
    for part, cfg in wanted.items():
        if saved.get(part) != cfg:
            raise JanusError(
                f"{config_file}: the {system} run there was trained with another {part} configuration "
                f"than this bench asks for; use a new --out folder"
            )


def _evaluate_once(
    translator: Translator,
    sources: list[str],
    references: list[str],
    setting_id: str,
    out: Path,
    system: str,
) -> tuple[EvalResult, list[str]]:
    """Evaluate one setting, or read back the result of an earlier run of the bench (under the
    setting's current label)."""
    text = _outputs_file(out, system, setting_id)
    meta = text.with_suffix(".json")
    if meta.is_file() and text.is_file():
        outputs = _read_outputs(text)
        if len(outputs) == len(sources):
            result = EvalResult(**json.loads(meta.read_text()))
            return dataclasses.replace(result, setting=label(setting_id)), outputs
    result, outputs = evaluate(translator, sources, references, setting(setting_id))
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_text("".join(line + "\n" for line in outputs), encoding="utf-8")
    meta.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result, outputs


CLAIMS = (  # (system, setting id) tested against (baseline, setting id)
    (("janus", "ar_beam_5"), ("ar", "ar_beam_5")),
    (("janus", "ar_greedy"), ("ar", "ar_greedy")),
    (("janus", "nar_t_10_l_3"), ("cmlm", "nar_t_10_l_3")),
    (("janus", "nar_t_4_l_3"), ("cmlm", "nar_t_4_l_3")),
    (("janus", "nar_t_10_l_3"), ("janus", "ar_beam_5")),
)


def _claim_tests(
    hyps: dict[tuple[str, str], list[str]], references: list[str], samples: int
) -> list[PairedBootstrap]:
    """The paired bootstrap of each claim whose two (system, setting id)s `hyps` holds outputs of."""
    tests = []
    for system, baseline in CLAIMS:
        if system in hyps and baseline in hyps:
            tests.append(
                paired_bootstrap(
                    (f"{system[0]} {label(system[1])}", hyps[system]),
                    (f"{baseline[0]} {label(baseline[1])}", hyps[baseline]),
                    references,
                    samples,
                )
            )
            _say(f"  {tests[-1]}")
    return tests


def valid_curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Validation quick-BLEU against updates from a run's log: {"bleu_ar": [(step, bleu)], ...}."""
    curves: dict[str, list[tuple[int, float]]] = {}
    log = run / "log.jsonl"
    if not log.is_file():
        return curves
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("split") != "valid":
            continue
        for key in ("bleu_ar", "bleu_nar"):
            if key in record:
                curves.setdefault(key, []).append((record["step"], record[key]))
    return curves


def plot_valid_bleu(out: Path, systems: tuple[str, ...]) -> Path | None:
    """PNG of validation BLEU (greedy AR: solid, one-pass NAR: dashed) against updates."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _say("  (matplotlib is not installed: no plot; pip install 'janusgen[bench]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, system in zip(("tab:blue", "tab:orange", "tab:green"), systems, strict=False):
        for key, style, curve in (("bleu_ar", "-", "AR greedy"), ("bleu_nar", "--", "NAR T=1")):
            points = valid_curves(out / system).get(key)
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, style, color=color, marker="o", ms=3, label=f"{system}: {curve}")
    ax.set_xlabel("updates")
    ax.set_ylabel("validation BLEU (quick, first sentences)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / PLOT
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_quality(report: dict[str, Any]) -> str:
    """The quality table and the significance tests, as Markdown."""
    hw = next(iter(report["systems"].values()), {}).get("hardware", {})
    lines = [
        f"{report['budget']} budget, {report['test_sentences']} test sentences, {report['date']}, "
        f"{hw.get('gpu') or hw.get('cpu', '?')} ({hw.get('threads', '?')} threads, "
        f"torch {hw.get('torch', '?')})",
        "",
        "| system | setting | BLEU | chrF | updates | training time |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for system, entry in report["systems"].items():
        training = entry["training"]
        for r in entry["results"]:
            lines.append(
                f"| {system} | {r['setting']} | {r['bleu']:.2f} | {r['chrf']:.2f} | {training['step']} "
                f"| {training['elapsed_s'] / 60:.1f} min |"
            )
    if report.get("significance"):
        lines += ["", format_tests(report["significance"])]
    return "\n".join(lines)


def format_tests(tests: list[dict[str, Any]]) -> str:
    """Paired bootstrap results (`PairedBootstrap.to_dict()`s) as a Markdown table."""
    lines = [
        "| claim | BLEU | baseline | Δ | 95% CI (system / baseline) | p |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for t in tests:
        lines.append(
            f"| {t['system']} vs {t['baseline']} | {t['system_bleu']:.2f} | {t['baseline_bleu']:.2f} "
            f"| {t['delta']:+.2f} | ±{t['system_ci']:.2f} / ±{t['baseline_ci']:.2f} | {t['p_value']:.4f} |"
        )
    return "\n".join(lines)


def compare_benches(
    out: Path, baseline_out: Path, system: str = "janus", samples: int = 1000
) -> list[PairedBootstrap]:
    """`system` of the bench in `out` against the same system of the bench in `baseline_out` (an ablation
    against the default, or one seed against another), setting by setting, with the paired bootstrap."""
    reports = []
    for folder in (Path(out), Path(baseline_out)):
        quality_file = folder / QUALITY
        if not quality_file.is_file():
            raise JanusError(f"{quality_file}: not found; run `janus bench quality --out {folder}` first")
        report = json.loads(quality_file.read_text())
        if system not in report["systems"]:
            raise JanusError(f"{quality_file}: no {system} system in this bench")
        reports.append(report)
    report, baseline = reports
    data, baseline_data = (
        _read_path(f, r["data"]).resolve() for f, r in ((out, report), (baseline_out, baseline))
    )
    if (data, report["test_sentences"]) != (baseline_data, baseline["test_sentences"]):
        raise JanusError(
            f"{out} and {baseline_out} were evaluated on different test sets "
            f"({report['test_sentences']} sentences of {data} against "
            f"{baseline['test_sentences']} of {baseline_data})"
        )
    _, references = PairDataset.open(data, "test").texts()
    references = references[: report["test_sentences"]]
    in_baseline = {id_of(r) for r in baseline["systems"][system]["results"]}
    tests = []
    for r in report["systems"][system]["results"]:
        setting_id = id_of(r)
        if setting_id is not None and setting_id in in_baseline:
            named = [
                (
                    f"{folder.name}: {system} {r['setting']}",
                    _read_outputs(_outputs_file(folder, system, setting_id)),
                )
                for folder in (Path(out), Path(baseline_out))
            ]
            tests.append(paired_bootstrap(named[0], named[1], references, samples))
    return tests


# --------------------------------------------------------------------------------------------- speed


def run_speed_bench(
    out: Path,
    sentences: int = 200,
    batch_size: int = 64,
    device: str = "auto",
) -> dict[str, Any]:
    """Time every setting of every system in `out/quality.json` on the first `sentences` test
    sentences: one at a time (latency) and `batch_size` at a time (throughput). Writes `out/speed.json`."""
    out = Path(out)
    quality_file = out / QUALITY
    if not quality_file.is_file():
        raise FileNotFoundError(f"{quality_file}: run `janus bench quality --out {out}` first")
    quality = json.loads(quality_file.read_text())
    sources, _ = PairDataset.open(_read_path(out, quality["data"]), "test").texts()
    sources = sources[:sentences]
    rows = []
    for system, entry in quality["systems"].items():
        translator = Translator.load(_checkpoint(out, system, entry), device=str(pick_device(device)))
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
        "baseline": f"{base['system']} {base['setting']}" if base else None,
        "hardware": hardware(),
        "date": datetime.date.today().isoformat(),
        "rows": rows,
    }
    (out / SPEED).write_text(json.dumps(report, indent=2) + "\n")
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


def format_speed(report: dict[str, Any]) -> str:
    hw = report["hardware"]
    lines = [
        f"{report['sentences']} test sentences, {report['date']}, {hw.get('gpu') or hw['cpu']} "
        f"({hw['threads']} threads), speedups over {report['baseline']}",
        "",
        f"| system | setting | BLEU | batch 1: ms/sentence | speedup | batch {report['batch_size']}: "
        "sentences/s | speedup |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        bleu = "" if r["bleu"] is None else f"{r['bleu']:.2f}"
        lines.append(
            f"| {r['system']} | {r['setting']} | {bleu} | {r['latency_ms']:.1f} "
            f"| {r.get('latency_speedup', 0):.2f}x "
            f"| {r['sentences_per_s']:.1f} | {r.get('throughput_speedup', 0):.2f}x |"
        )
    return "\n".join(lines)
