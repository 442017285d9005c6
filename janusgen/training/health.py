"""Whether a run is learning: the divergence check (a loss or gradient that is no longer finite), the
warnings a run prints when its budget or its results say it cannot have learnt, and the quick validation
BLEU that the second of those reads."""

from __future__ import annotations

import math

import numpy as np
import torch

from janusgen.data.batching import PairBatches
from janusgen.data.tokenizer_base import TextTokenizer
from janusgen.errors import JanusError
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.training.config import TrainConfig

# Below this many updates a run has not left the unigram plateau (BENCHMARKS.md): say so
MIN_LEARNING_UPDATES = 300
PROJECT_AFTER_UPDATES = 10  # updates timed before projecting how many the time budget allows
# quick validation BLEU below which a model has not learned yet; one-pass NAR with one length scores far
# below Mask-Predict's T=10 (0.64 one-pass went with 7.0 at T=10, l=3 in the AVX2 demo: BENCHMARKS.md)
NEAR_ZERO_BLEU = {"bleu_ar": 1.0, "bleu_nar": 0.25}


def non_finite(values: dict[str, float]) -> dict[str, float]:
    """The entries of `values` that are NaN or infinite."""
    return {name: value for name, value in values.items() if not math.isfinite(value)}


def diverged(step: int, what: str, values: dict[str, float], lr: float) -> JanusError:
    """The error that stops a run whose loss or gradient stopped being finite: training on would only
    write NaN weights (and a NaN `best`). The checkpoints written before are left as they are."""
    shown = ", ".join(f"{name} {value}" for name, value in sorted(values.items()))
    return JanusError(
        f"update {step}: the {what} is not finite ({shown}): the run diverged and stops here, before "
        f"saving anything more (what it saved before is finite); lower --lr (now {lr:g}) or --clip-norm, or "
        "raise --warmup, and start again with --overwrite"
    )


def check_finite(step: int, what: str, values: dict[str, float], lr: float) -> None:
    """Stop the run (`diverged`) when one of `values` (the `what` at update `step`) is not finite."""
    bad = non_finite(values)
    if bad:
        raise diverged(step, what, bad, lr)


def projection_warnings(
    cfg: TrainConfig, step: int, elapsed_s: float, per_update_s: float, device: torch.device
) -> list[str]:
    """After the first updates (at `step`, `elapsed_s` into the budget, `per_update_s` each on `device`):
    project how many updates the time budget allows, and warn when the run cannot learn in them: too few
    updates, or a warmup that takes most of them."""
    if cfg.time_budget_s is None or per_update_s <= 0:
        return []
    where = f"{per_update_s:.2f} s per update on {device} in {cfg.precision}"
    projected = step + int((cfg.time_budget_s - elapsed_s) / per_update_s)
    projected = min(projected, cfg.max_updates)
    warnings = []
    if projected < MIN_LEARNING_UPDATES:
        warnings.append(
            f"this run will make only about {projected} updates in its time budget ({where}): too few "
            "to learn. Give it a longer --time-budget, a smaller --preset or smaller --max-tokens"
        )
    if cfg.warmup_fraction is None and cfg.warmup_updates > projected / 2:
        warnings.append(
            f"the warmup of {cfg.warmup_updates} updates is longer than half of the ~{projected} updates "
            f"this run will make ({where}): the learning rate will barely rise. Use --recipe cpu "
            "(a warmup counted in time) or a smaller --warmup"
        )
    return warnings


def result_warnings(step: int, last_valid: dict[str, float]) -> list[str]:
    """At the end of a run of `step` updates whose last validation gave `last_valid`: warn when it made
    too few updates to learn, or when its quick BLEU says it has not learnt to translate."""
    warnings = []
    if step < MIN_LEARNING_UPDATES:
        warnings.append(
            f"the run made only {step} updates: too few to learn (see the projection above); "
            "its outputs will be near empty"
        )
    for name, floor in NEAR_ZERO_BLEU.items():
        value = last_valid.get(name)
        if value is not None and value < floor:
            warnings.append(
                f"validation {name} is {value:.2f} after {step} updates: the model has not "
                "learned to translate yet. Train longer (--time-budget / --max-updates, or --resume)"
            )
    return warnings


def quick_bleu(
    model: JanusTransformer,
    objective: JanusObjective,
    data: PairBatches,
    tokenizer: TextTokenizer,
    sentences: int,
) -> dict[str, float]:
    """BLEU of the modes `objective` trains on the first `sentences` pairs of `data`: greedy AR and
    one-pass NAR (one length candidate)."""
    from janusgen.config import DecodeConfig
    from janusgen.decoding import decode
    from janusgen.evaluation.metrics import bleu

    settings = {}
    if objective.needs_ar:
        settings["bleu_ar"] = DecodeConfig(mode="ar", beam=1)
    if objective.needs_nar:
        settings["bleu_nar"] = DecodeConfig(mode="nar", iterations=1, length_beam=1)
    device = next(model.parameters()).device
    positions = np.arange(min(sentences, len(data.kept)))
    refs = tokenizer.decode([data.dataset.tgt[int(i)].tolist() for i in data.kept[positions]])
    hyps: dict[str, list[list[int]]] = {name: [] for name in settings}
    for chunk in np.array_split(positions, max(1, math.ceil(len(positions) / 64))):
        src: torch.Tensor = data.collate(chunk).src.to(device)
        for name, setting in settings.items():
            hyps[name] += decode(model, src, setting).tokens
    return {name: bleu(tokenizer.decode(h), refs).score for name, h in hyps.items()}
