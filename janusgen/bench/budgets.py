"""What one system of a quality bench changes in its budget (the budgets themselves are
`janusgen.presets.BUDGETS`): `system_setup` adds distilled data or equal time instead of equal updates,
and `settings_for` names the decoding settings a system is evaluated in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from janusgen.data.dataset import PairDataset
from janusgen.decoding.settings import setting
from janusgen.errors import JanusError
from janusgen.presets import OBJECTIVE_PRESETS, Budget
from janusgen.training.config import TrainConfig

SYSTEMS = tuple(OBJECTIVE_PRESETS)  # one system per objective preset: ar, cmlm, janus
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
