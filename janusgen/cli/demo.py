"""`janus demo`: the Bible corpus, a small JANUS model trained on the CPU, both decoding modes."""

from __future__ import annotations

import argparse
from pathlib import Path

from janusgen.cli.options import duration
from janusgen.presets import DEMO_TIME_BUDGET_S


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the main job: Bible corpus -> train a small JANUS model -> translate in both modes",
        description="Build and prepare the Spanish->English Bible, train a small JANUS model (JANUS "
        "without the KL terms: the cpu recipe) for --time-budget on the CPU, then translate the test split "
        "with AR beam search and NAR Mask-Predict and print BLEU, chrF and speed. Steps whose output exists "
        "in --work are skipped.",
    )
    demo.add_argument("--work", type=Path, default=Path("work"), help="working folder (default %(default)s)")
    demo.add_argument(
        "--time-budget",
        type=duration,
        default=DEMO_TIME_BUDGET_S,
        metavar="DURATION",
        help=f"training time, e.g. 15m or 1h (default {DEMO_TIME_BUDGET_S / 60:g}m)",
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    demo.add_argument("--limit", type=int, default=None, help="evaluate only the first N test verses")
    demo.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from janusgen.demo import run_demo

    run_demo(args.work, args.time_budget, seed=args.seed, limit=args.limit)
    return 0
