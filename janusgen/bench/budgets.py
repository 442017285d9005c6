"""The budgets a quality bench trains the systems under, and what one system changes in its budget.

A budget fixes the model, the training options (updates included) and the three objectives, so that `ar`,
`cmlm` and `janus` differ only in what they learn; `system_setup` adds what one system changes (distilled
data, equal time instead of equal updates) and `settings_for` names the decoding settings it is evaluated
in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from janusgen.config import (
    BENCH_BUDGET_UPDATES,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
    model_preset,
    objective_preset,
    paper_recipe,
)
from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import setting
from janusgen.demo import DemoPreset
from janusgen.errors import JanusError

SYSTEMS = ("ar", "cmlm", "janus")


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
    """The paper's IWSLT setting as the authors' release trains it: `paper-iwslt` (their model exactly:
    6+6 layers, d512, post-norm, BERT init, dropout 0.3, source BOS, their length classifier and AR query
    positions), the `paper` recipe's optimisation (their script: lr 5e-4 inverse square root after
    10,000 warmup updates, no clipping), 8k-token batches (theirs: 4,096 on each of 2 GPUs), and JANUS
    with their masking (`release`) and encoding the source once per view as they do (each view its own
    dropout)."""
    model = model_preset("paper-iwslt")
    objectives = {name: objective_preset(name) for name in SYSTEMS}
    objectives["janus"] = dataclasses.replace(objectives["janus"], encode_per_view=True, masking="release")
    _, _, paper = paper_recipe(model, objectives["janus"])
    train_cfg = dataclasses.replace(
        paper,
        max_updates=updates,
        max_tokens=8192,
        validate_every=1000,
        valid_bleu_sentences=500,
        seed=seed,
        log_every=100,
        keep_last=1,
    )
    return Budget("gpu", model, train_cfg, objectives)


def gpu_ours_budget(updates: int, seed: int) -> Budget:
    """The gpu budget with our optimisation choices instead of the release's: TrainConfig's warmup (4,000
    updates) and clipping (gradient norm 1.0), and 50,000 updates by default (a quarter of the release's
    200,000)."""
    budget = gpu_budget(updates, seed)
    ours = TrainConfig()
    train_cfg = dataclasses.replace(
        budget.train, warmup_updates=ours.warmup_updates, clip_norm=ours.clip_norm
    )
    return dataclasses.replace(budget, name="gpu-ours", train=train_cfg)


def cpu_long_budget(updates: int, seed: int) -> Budget:
    """The cpu budget at 4x its updates (6,000 by default: about 2.5 hours per JANUS run on 2 cores), for
    the question the short one cannot answer: does the AR gap close once NAR/AUX are good teachers? Every
    finished step is kept, so it can be run an hour at a time: run the same command again to continue."""
    return dataclasses.replace(cpu_budget(updates, seed), name="cpu-long")


BUDGETS = {"cpu": cpu_budget, "cpu-long": cpu_long_budget, "gpu": gpu_budget, "gpu-ours": gpu_ours_budget}
DEFAULT_UPDATES = BENCH_BUDGET_UPDATES  # per system, when --updates is not given
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


def decodes(system: str, setting_id: str) -> bool:
    """Whether `system` can be evaluated in the registered setting `setting_id` (`--settings` may name
    any such setting, not only the defaults of settings_for): ar has only the AR view, cmlm only the NAR
    view (so no self-reranking), janus both."""
    cfg = setting(setting_id)
    if system == "ar":
        return cfg.mode == "ar"
    if system == "cmlm":
        return cfg.mode == "nar" and not cfg.rerank
    return True


DISTILLED_FOR = ("nar", "all")


def system_setup(
    system: str,
    data: Path,
    budget: Budget,
    distilled: Path | None,
    time_budget_s: float | None,
    distilled_for: str = "nar",
) -> tuple[Path, TrainConfig]:
    """The data and training options of one system: with `distilled` (a `janus distill` folder of `data`)
    and `distilled_for` "nar", cmlm learns the teacher's outputs and janus its NAR/AUX views on them, its
    AR view on the references, while ar stays on `data`; with "all" every system and view learns the
    teacher's outputs (sequence-level distillation for AR too). With `time_budget_s` every system trains
    for that long (equal time) instead of for the budget's updates (equal updates)."""
    if distilled_for not in DISTILLED_FOR:
        raise JanusError(f"--distilled-for {distilled_for}: choose from {', '.join(DISTILLED_FOR)}")
    cfg = budget.train
    if time_budget_s is not None:
        cfg = dataclasses.replace(cfg, max_updates=EQUAL_TIME_MAX_UPDATES, time_budget_s=time_budget_s)
    if distilled is None or (system == "ar" and distilled_for == "nar"):
        return Path(data), cfg
    if system == "janus" and distilled_for == "nar":
        objective = budget.objectives["janus"]
        if objective.kl_ar_nar + objective.kl_ar_aux > 0:
            raise JanusError(
                "--distilled: janus's AR view learns the references and its NAR/AUX views the teacher's "
                "outputs, so the KLs between them have no common target; add --janus-option kl_ar_nar=0 "
                "--janus-option kl_ar_aux=0, or --distilled-for all"
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
