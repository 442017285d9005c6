"""`janus bench quality`: train `ar`, `cmlm` and `janus` under one budget, evaluate each on the test split
in every decoding setting it supports, and test the paper's claims (CLAIMS) with sacreBLEU's paired
bootstrap.

Every finished step (a trained run, a setting's outputs) is kept under --out and skipped on a second run;
a run in --out trained with other settings is refused rather than reported under this bench's.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from janusgen.bench.budgets import SYSTEMS, Budget, check_distilled, decodes, settings_for, system_setup
from janusgen.bench.common import QUALITY, _outputs_file, _read_outputs, _say, _stored_path, hardware
from janusgen.bench.report import plot_valid_bleu
from janusgen.checkpoint import CONFIG_FILE
from janusgen.config import from_dict
from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import SETTINGS, label, setting
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.evaluation.evaluate import EvalResult, evaluate
from janusgen.evaluation.significance import PairedBootstrap, paired_bootstrap
from janusgen.fileio import atomic_file, read_json
from janusgen.hardware import pick_device
from janusgen.model.config import ModelConfig
from janusgen.objective_config import ObjectiveConfig
from janusgen.training.config import TrainConfig
from janusgen.training.recipe import train
from janusgen.training.run_dir import resume_point


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
    distilled_for: str = "nar",
) -> dict[str, Any]:
    """Train each system (or resume it), evaluate it on the test split, test the claims; writes
    `out/quality.json`, the outputs under `out/outputs/` and the validation-BLEU plot. `distilled`,
    `distilled_for` and `time_budget_s`: see `system_setup`; `only_settings`: evaluate these setting ids
    instead of settings_for's, each in the systems that can decode it."""
    out = Path(out)
    if only_settings is not None:
        unknown = sorted(set(only_settings) - set(SETTINGS))
        if unknown:
            raise JanusError(f"--settings {' '.join(unknown)}: unknown; choose from {', '.join(SETTINGS)}")
        undecoded = [sid for sid in only_settings if not any(decodes(s, sid) for s in systems)]
        if undecoded:
            raise JanusError(f"--settings {' '.join(undecoded)}: none of {', '.join(systems)} can decode it")
    if distilled is not None:
        check_distilled(data, distilled)
    sources, references = PairDataset.open(data, "test").texts()
    if limit is not None:
        sources, references = sources[:limit], references[:limit]
    report: dict[str, Any] = {
        "budget": budget.name,
        "data": _stored_path(out, data),  # relative to out, as every path a report stores
        "distilled": None if distilled is None else _stored_path(out, distilled),
        "distilled_for": None if distilled is None else distilled_for,
        "time_budget_s": time_budget_s,  # equal time; None: equal updates
        "test_sentences": len(sources),
        "model": None,  # the trained model's (its vocabulary is the data's), filled in below
        "train": dataclasses.asdict(budget.train),
        "date": datetime.date.today().isoformat(),
        "systems": {},
    }
    hyps: dict[tuple[str, str], list[str]] = {}
    for system in systems:
        run = out / system
        summary_file = run / "summary.json"
        system_data, train_cfg = system_setup(system, data, budget, distilled, time_budget_s, distilled_for)
        _check_same_setup(run, budget, system, train_cfg, system_data)
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
            with atomic_file(summary_file) as f:
                f.write(json.dumps(summary, indent=2) + "\n")
        if report["model"] is None:  # every system trains the same model
            report["model"] = _trained_model(run)
        translator = Translator.load(run / "last", device=str(pick_device(device)))
        entry = {
            "data": _stored_path(out, system_data),
            "ar_targets": train_cfg.ar_targets,
            "objective": dataclasses.asdict(budget.objectives[system]),
            "training": read_json(summary_file),
            "checkpoint": _stored_path(out, run / "last"),
            "hardware": hardware(),
            "results": [],
        }
        chosen = settings_for(system) if only_settings is None else only_settings
        for setting_id in (sid for sid in chosen if decodes(system, sid)):
            result, outputs = _evaluate_once(translator, sources, references, setting_id, out, system)
            _say(f"  {system} {result.setting}: BLEU {result.bleu:.2f}, chrF {result.chrf:.2f}")
            entry["results"].append({"id": setting_id, **result.to_dict()})
            hyps[system, setting_id] = outputs
        report["systems"][system] = entry
    report["significance"] = [test.to_dict() for test in _claim_tests(hyps, references, bootstrap_samples)]
    with atomic_file(out / QUALITY) as f:
        f.write(json.dumps(report, indent=2) + "\n")
    plot_valid_bleu(out, systems)
    return report


def _trained_model(run: Path) -> dict[str, Any]:
    """The model configuration a run in the bench trained, from its config.json: the budget's preset with
    the data's vocabulary and special ids (a field added since the run takes its default)."""
    config_file = run / "last" / CONFIG_FILE
    saved = json.loads(config_file.read_text())["model"]
    return dataclasses.asdict(from_dict(ModelConfig, saved, where=str(config_file)))


def _check_same_setup(run: Path, budget: Budget, system: str, train_cfg: TrainConfig, data: Path) -> None:
    """Refuse to reuse (or resume) a run of `--out` trained on other data or with another model,
    objective, update count, time budget or AR targets: its numbers would be reported under this bench's
    settings."""
    config_file = run / "last" / CONFIG_FILE
    if not config_file.is_file():
        return
    saved = read_json(config_file)
    where = str(config_file)
    saved_data = saved.get("data", {}).get("dir")
    # a folder moved since (a bench continued elsewhere) cannot be compared; one that is there can
    if saved_data is not None and Path(saved_data).is_dir() and not Path(saved_data).samefile(data):
        raise JanusError(
            f"{config_file}: the {system} run there was trained on {saved_data}, this bench trains it on "
            f"{data}; use a new --out"
        )
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
            result = EvalResult(**read_json(meta))
            return dataclasses.replace(result, setting=label(setting_id)), outputs
    result, outputs = evaluate(translator, sources, references, setting(setting_id))
    text.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(text) as f:
        f.write("".join(line + "\n" for line in outputs))
    with atomic_file(meta) as f:
        f.write(json.dumps(result.to_dict(), indent=2) + "\n")
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
