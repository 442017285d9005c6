"""The main job, `janus demo`: build and prepare the Spanish->English Bible, train a small JANUS model
for a bounded time, and translate the test split in both modes, printing BLEU, chrF and speed.

Every step writes into --work and is skipped when its output is already there, so a second run only
evaluates (or finishes an interrupted training run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from janusgen.checkpoint import CONFIG_FILE
from janusgen.config import BibleConfig, PrepareConfig
from janusgen.data.binarized import META_FILE
from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import SPEED_BASELINE, label, setting
from janusgen.decoding.translator import Translator
from janusgen.evaluation.evaluate import EvalResult, evaluate, format_table
from janusgen.fileio import atomic_file, read_json
from janusgen.hardware import PrecisionChoice, Timing, resolve_precision, time_pairs
from janusgen.model.config import ModelConfig
from janusgen.model.transformer import JanusTransformer
from janusgen.objective_config import ObjectiveConfig
from janusgen.presets import DEMO_PRESETS, DEMO_TIME_BUDGET_S, DemoPreset
from janusgen.training.config import TrainConfig

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
NO_KL_NAME = "JANUS without the KL terms (the cpu recipe)"
PLAN = "demo_plan.json"
NEAR_ZERO_BLEU = 1.0


# Candidate models, largest first (presets.DEMO_PRESETS says why)
CANDIDATES = tuple(build() for build in DEMO_PRESETS.values())
DEFAULT_PRESET = CANDIDATES[0]  # the vocabulary's size, and the model a resumed run's options name
TARGET_UPDATES = 1500
VALIDATION_SHARE = 0.08  # of the budget: the quick validations every 250 updates
PLAN_PAIRS = 5  # AR-only / joint update pairs timed per candidate (more when they disagree)


@dataclass(frozen=True)
class DemoPlan:
    preset: DemoPreset
    precision: PrecisionChoice
    ar_update_s: float  # measured seconds per AR-only update and per joint JANUS update
    joint_update_s: float
    planned_updates: int
    reason: str
    busy: bool = False  # the machine was too busy for repeated timings to agree

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {
                "encoder_layers": self.preset.encoder_layers,
                "decoder_layers": self.preset.decoder_layers,
            },
            "precision": self.precision.to_dict(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ar_update_s": self.ar_update_s,
            "joint_update_s": self.joint_update_s,
            "planned_updates": self.planned_updates,
            "reason": self.reason,
            "busy": self.busy,
        }


def plan_demo(data: Path, time_budget_s: float, candidates=CANDIDATES, steps: int = PLAN_PAIRS) -> DemoPlan:
    """Measure this machine: the precision (hardware.resolve_precision), then the time of an AR-only
    and of a joint update of each candidate on real batches, largest first; keep the first whose
    budget allows TARGET_UPDATES updates (the curriculum's AR-only share counted at its own speed)."""
    train_set = PairDataset.open(data, "train")
    plan = None
    for preset in candidates:
        model_cfg = dataclasses.replace(preset.model(), vocab_size=train_set.tokenizer.vocab_size)
        objective = preset.objective()
        precision = resolve_precision(preset.precision, "cpu", model_cfg.d_model, model_cfg.ffn_dim)
        timing = time_updates(train_set, model_cfg, objective, preset.train(None, 1), precision, steps)
        ar_s, joint_s = timing.a_s, timing.b_s
        if timing.busy:
            log.warning(
                f"the machine is too busy to measure reliably: repeated timings disagree by up to "
                f"{timing.spread:.1f}x (another job is running?); the plan below takes their median and may "
                "be off; run the demo on a quieter machine for a steadier one"
            )
        usable = time_budget_s * (1 - VALIDATION_SHARE)
        ar_share = objective.ar_only_fraction
        planned = int(usable * ar_share / ar_s + usable * (1 - ar_share) / joint_s)
        enough = planned >= TARGET_UPDATES
        reason = (
            f"{preset.encoder_layers}+{preset.decoder_layers} layers: {ar_s:.2f} s per AR-only update, "
            f"{joint_s:.2f} s per joint update in {precision.precision} -> about {planned} updates in "
            f"{time_budget_s / 60:.0f} min ({'enough' if enough else 'fewer than'} {TARGET_UPDATES})"
        )
        plan = DemoPlan(preset, precision, ar_s, joint_s, planned, reason, timing.busy)
        log.info(f"  {reason}")
        if enough:
            break
    assert plan is not None
    return plan


def time_updates(
    dataset: PairDataset,
    model_cfg: ModelConfig,
    objective_cfg: ObjectiveConfig,
    train_cfg: TrainConfig,
    precision: PrecisionChoice,
    steps: int,
) -> Timing:
    """Seconds of an AR-only update (`a_s`) and of a joint update (`b_s`): forward, backward, AdamW
    step on batches of the training split, one warm-up update of each, then `steps` interleaved pairs
    (`hardware.time_pairs`: a load that changes meanwhile weighs on both; `busy` when they disagree)."""
    from janusgen.data.batching import PairBatches
    from janusgen.objectives import JanusObjective
    from janusgen.training.optim import build_optimizer

    torch.manual_seed(0)
    model = JanusTransformer(model_cfg).train()
    optimizer = build_optimizer(model, train_cfg)
    objective = JanusObjective(objective_cfg, seed=0)
    batches = PairBatches(dataset, model_cfg, train_cfg.max_tokens, 0, True)
    sampled = iter(batches.sampler)
    autocast = torch.autocast("cpu", dtype=precision.dtype, enabled=precision.precision != "fp32")

    def update(joint: bool) -> None:
        objective.set_update(1, 1.0 if joint else 0.0)
        batch = batches.collate(next(sampled).indices)
        with autocast:
            loss = objective(model, batch.src, batch.tgt).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    update(False)  # warm-up
    update(True)
    return time_pairs(lambda: update(False), lambda: update(True), steps)


# The ids (decoding.settings) of the settings evaluated on the test split, in this order; speedups
# are relative to SPEED_BASELINE
SETTINGS = ("ar_beam_5", "ar_greedy", "nar_t_10_l_3", "nar_t_4_l_3")


def run_demo(
    work: Path,
    time_budget_s: float = DEMO_TIME_BUDGET_S,
    preset: DemoPreset | None = None,
    seed: int = 1,
    limit: int | None = None,
) -> list[EvalResult]:
    from janusgen.data.bible import build_bible_corpus, format_bible_report
    from janusgen.data.prepare import format_prepare_report, prepare
    from janusgen.data.sources import TextFilesSource
    from janusgen.training.recipe import train
    from janusgen.training.run_dir import resume_point

    work = Path(work)
    bible, data, run = work / "bible", work / "bible_data", work / "run"
    vocab_size = (preset or DEFAULT_PRESET).vocab_size  # one vocabulary for every candidate model
    step = _announce
    if not (bible / "manifest.json").is_file():
        step("1/4 building the Spanish->English Bible corpus from Debian's SWORD packages")
        print(format_bible_report(build_bible_corpus(bible, BibleConfig())))
    else:
        step(f"1/4 corpus already in {bible}")
    if not (data / META_FILE).is_file():
        step(f"2/4 preparing it: SentencePiece vocabulary of {vocab_size}, binarized splits")
        source = TextFilesSource(bible, BibleConfig().source, BibleConfig().target)
        print(format_prepare_report(prepare(source, data, PrepareConfig(vocab_size=vocab_size))))
    else:
        step(f"2/4 prepared data already in {data}")
    if not (run / SUMMARY).is_file():
        resume = resume_point(run) is not None
        threads = torch.get_num_threads()
        name = objective_name(dataclasses.asdict((preset or DEFAULT_PRESET).objective()))
        step(
            f"3/4 training {name} for {time_budget_s / 60:.0f} min on {threads} CPU thread(s) "
            f"(CPU capability {torch.backends.cpu.get_cpu_capability()}){' (resuming)' if resume else ''}"
        )
        if preset is None and not resume:
            log.info("  measuring this machine to choose the model:")
            plan = plan_demo(data, time_budget_s)
            preset = plan.preset
            print(f"  chosen: {plan.reason}; precision {plan.precision.precision} ({plan.precision.reason})")
            with atomic_file(work / PLAN) as f:
                f.write(json.dumps(plan.to_dict(), indent=2) + "\n")
        preset = preset or DEFAULT_PRESET  # resuming: the model and options come from the checkpoint
        summary = train(
            data,
            run,
            preset.model(),
            preset.objective(),
            preset.train(time_budget_s, seed),
            resume=resume,
            overwrite=not resume,  # a run killed before its first checkpoint starts afresh
            device="cpu",
            resume_overrides={"time_budget_s": time_budget_s},
        )
        with atomic_file(run / SUMMARY) as f:
            f.write(json.dumps(summary, indent=2) + "\n")
    else:
        step(f"3/4 trained model already in {run}")
    step("4/4 translating the test split in both modes")
    translator = Translator.load(run / "best", dtype="auto")
    sources, references = PairDataset.open(data, "test").texts()
    if limit is not None:
        sources, references = sources[:limit], references[:limit]
    results = []
    for setting_id in SETTINGS:
        result, _ = evaluate(translator, sources, references, setting(setting_id))
        log.info(f"  {result.setting}: BLEU {result.bleu:.2f}, {result.sentences_per_s:.1f} sentences/s")
        results.append(result)
    report = _report(results, run)
    if (work / PLAN).is_file():
        report["plan"] = read_json(work / PLAN)
    with atomic_file(work / "demo_results.json") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    name = objective_name(report["objective"])
    print(f"\nSpanish->English Bible, test split ({len(sources)} verses), {name}, model {run / 'best'}")
    print(format_table(results, baseline=label(SPEED_BASELINE)))
    for problem in _problems(report):
        print(f"\nwarning: {problem}")
    return results


def objective_name(objective: dict[str, Any]) -> str:
    """How the demo names the model it trained, wherever it shows a result: JANUS with its KL weights at 0
    is the paper's "without KL" ablation and must never read as the paper's loss."""
    if objective.get("name") != "janus":
        return f"a {objective.get('name', 'model')} model"
    if any(objective.get(k, 0.0) for k in ("kl_ar_nar", "kl_nar_aux", "kl_ar_aux")):
        return "JANUS (the paper's loss, KL terms on)"
    return NO_KL_NAME


def _problems(report: dict[str, Any]) -> list[str]:
    """What went wrong, in words, so that a table of near-zero scores is never printed without comment."""
    problems = list(report["training"].get("warnings", []))
    low = [r["setting"] for r in report["results"] if r["bleu"] < NEAR_ZERO_BLEU]
    if low:
        problems.append(
            f"BLEU is near 0 in {', '.join(low)}: the model did not learn in its "
            f"{report['training']['step']} updates. Run `janus demo --time-budget 1h` to train longer "
            "(it resumes), and check the precision chosen above"
        )
    return problems


def _report(results: list[EvalResult], run: Path) -> dict[str, Any]:
    summary = read_json(run / SUMMARY)
    config = read_json(run / "best" / CONFIG_FILE)
    return {
        "training": summary,
        "best_step": config.get("step"),
        "objective": config.get("objective", {}),
        "results": [r.to_dict() for r in results],
        "threads": torch.get_num_threads(),
    }


def _announce(text: str) -> None:
    log.info(f"\n== {text}")
