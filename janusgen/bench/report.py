"""What a bench shows a reader: the quality report, the significance tests and the speed report as
Markdown tables, and the validation BLEU of the trained runs against updates as a plot.

It only reads what the benches wrote (quality.json, speed.json, each run's log.jsonl); it measures
nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from janusgen.bench.common import PLOT, _say


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
