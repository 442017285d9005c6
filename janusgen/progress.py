"""Progress bars follow the `janusgen` logger: `janus --quiet` (the logger set above INFO) hides them along
with the other progress messages. A program that never sets the logger's level keeps them."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from janusgen.training.config import TrainConfig


def quiet() -> bool:
    """True when the `janusgen` logger was set to show less than INFO (`janus --quiet`)."""
    return logging.getLogger("janusgen").level > logging.INFO


def time_budget_text(step: int, elapsed_s: float, budget_s: float) -> str:
    """What a time-budgeted run's bar says: the update reached, the time spent of the budget and left."""
    left = tqdm.format_interval(max(budget_s - elapsed_s, 0))
    return (
        f"update {step}, {tqdm.format_interval(elapsed_s)} of {tqdm.format_interval(budget_s)}, {left} left"
    )


def training_bar(cfg: TrainConfig, step: int, elapsed_s: float, disable: bool) -> tqdm:
    """The training bar: it counts updates, or with a time budget the budget's seconds (then its text,
    set each update with time_budget_text, names the update: a rate of seconds per second says nothing)."""
    if cfg.time_budget_s is None:
        return tqdm(total=cfg.max_updates, initial=step, disable=disable, unit=" upd", file=sys.stderr)
    return tqdm(
        total=round(cfg.time_budget_s),
        initial=round(elapsed_s),
        disable=disable,
        bar_format="{percentage:3.0f}%|{bar}| {desc}{postfix}",
        desc=time_budget_text(step, elapsed_s, cfg.time_budget_s),
        file=sys.stderr,
    )
