"""`janus bench quality|speed|compare`: the paper's claims, quality and speed side by side."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from janusgen.cli.options import duration, parse_assignments
from janusgen.config import QUANTIZATIONS
from janusgen.errors import JanusError
from janusgen.model.config import DATA_MODEL_FIELDS, ModelConfig
from janusgen.objective_config import ObjectiveConfig
from janusgen.presets import BUDGETS


def add_commands(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks of the paper's claims: quality and speed side by side")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="{quality,speed,compare}")
    quality = bsub.add_parser(
        "quality",
        help="train ar, cmlm and janus with the same budget, evaluate every decoding setting",
        description="Train ar, cmlm and janus with the same model, data, batches, seed and number of "
        "updates; evaluate each on the test split (AR beam 5 and greedy; NAR T=1,2,4,10 with length beam "
        "3, with and without self-reranking) and test JANUS against each baseline with sacreBLEU's paired "
        "bootstrap. Finished steps in --out are skipped, so an interrupted bench resumes.",
    )
    quality.add_argument("--data", type=Path, required=True, help="prepared data folder (janus data prepare)")
    quality.add_argument("--out", type=Path, required=True, help="folder for the runs, outputs and reports")
    quality.add_argument(
        "--budget",
        choices=tuple(BUDGETS),
        default="cpu",
        help="cpu: the demo's small model for 2 CPU cores; cpu-long: the same at 4x the updates (hours: "
        "stop it any time and run the command again to continue); gpu: `paper-iwslt` trained as the "
        "authors' release trains it (warmup 10,000, no clipping); gpu-ours: the same model with our "
        "warmup (4,000) and clipping (1.0)",
    )
    quality.add_argument(
        "--updates",
        type=int,
        default=None,
        help="updates per system, the same for every system (default: "
        + ", ".join(f"{name} {build().train.max_updates}" for name, build in BUDGETS.items())
        + ")",
    )
    quality.add_argument(
        "--time-budget",
        type=duration,
        default=None,
        metavar="DURATION",
        help="equal time instead of equal updates: every system trains for this long (e.g. 30m); the "
        "budget's warmup and curriculum are fractions of it",
    )
    quality.add_argument(
        "--distilled",
        type=Path,
        default=None,
        metavar="DIR",
        help="a `janus distill` folder of --data: cmlm trains on it, janus its NAR/AUX views on it and "
        "its AR view on the references (give --janus-option kl_ar_nar=0 --janus-option kl_ar_aux=0), ar "
        "on --data",
    )
    quality.add_argument(
        "--distilled-for",
        choices=("nar", "all"),
        default="nar",
        help="with --distilled: nar (as above) or all: ar and janus's AR view learn the teacher's "
        "outputs too (default %(default)s)",
    )
    quality.add_argument(
        "--settings",
        nargs="+",
        default=None,
        metavar="ID",
        help="evaluate these settings instead of the defaults (ids such as ar_beam_5 nar_t_10_l_3 "
        "nar_t_10_l_3_collapse; each in the systems that can decode it; default: AR beam 5 and greedy, "
        "NAR T=1,2,4,10 l=3 and, for janus, the same with self-reranking)",
    )
    quality.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    quality.add_argument(
        "--systems", nargs="+", choices=("ar", "cmlm", "janus"), default=["ar", "cmlm", "janus"]
    )
    quality.add_argument(
        "--janus-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a janus objective setting, for an ablation: e.g. kl_ar_aux=0 (repeatable)",
    )
    quality.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model setting for every system, for an ablation: e.g. dropout=0.1 (repeatable)",
    )
    quality.add_argument(
        "--keep-last",
        type=int,
        default=None,
        metavar="N",
        help="step checkpoints each run keeps besides last (default: the budget's, 1); keep them all "
        "(e.g. 1000) to evaluate a run at any update, such as the one it had reached when the other "
        "system's training time was up (equal time, read off an equal-updates bench)",
    )
    quality.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    quality.add_argument("--limit", type=int, default=None, help="evaluate only the first N test sentences")
    quality.add_argument("--bootstrap-samples", type=int, default=1000, help="paired bootstrap resamples")
    quality.set_defaults(func=_run_bench_quality)

    speed = bsub.add_parser(
        "speed",
        help="batch-1 latency and batch-64 throughput of every setting, as speedups over AR beam 5",
        description="Time every decoding setting of the systems of a `janus bench quality` run on the same "
        "test sentences in one process: one sentence at a time (latency) and --batch-size at a time "
        "(throughput), reported as speedups over JANUS's AR beam 5.",
    )
    speed.add_argument("--out", type=Path, required=True, help="the folder of a `janus bench quality` run")
    speed.add_argument(
        "--sentences", type=int, default=200, help="first N test sentences (default %(default)s)"
    )
    speed.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default %(default)s)")
    speed.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    speed.add_argument(
        "--quantize", choices=QUANTIZATIONS, default="none", help="int8 weights (CPU) (default %(default)s)"
    )
    speed.set_defaults(func=_run_bench_speed)

    compare = bsub.add_parser(
        "compare",
        help="one bench's system against another's (an ablation, another seed), setting by setting",
        description="Test a system of the `janus bench quality` run in OUT against the same system of the "
        "run in BASELINE, in every decoding setting both evaluated, with sacreBLEU's paired bootstrap on "
        "their saved outputs (nothing is decoded again).",
    )
    compare.add_argument("out", type=Path, help="the folder of a `janus bench quality` run")
    compare.add_argument("baseline", type=Path, help="the folder of the run to compare it with")
    compare.add_argument("--system", choices=("ar", "cmlm", "janus"), default="janus")
    compare.add_argument("--bootstrap-samples", type=int, default=1000, help="paired bootstrap resamples")
    compare.set_defaults(func=_run_bench_compare)


def _run_bench_quality(args: argparse.Namespace) -> int:
    from janusgen.bench import format_quality, run_quality_bench

    if args.updates is not None and args.updates <= 0:
        raise JanusError(f"--updates {args.updates}: must be > 0")
    budget = BUDGETS[args.budget]().scaled(args.updates, args.seed)
    ablation = parse_assignments(args.janus_option, ObjectiveConfig, "--janus-option")
    janus = dataclasses.replace(budget.objectives["janus"], **ablation)
    model_ablation = parse_assignments(args.model_option, ModelConfig, "--model-option", DATA_MODEL_FIELDS)
    model = dataclasses.replace(budget.model, **model_ablation)
    budget = dataclasses.replace(budget, model=model, objectives={**budget.objectives, "janus": janus})
    if args.keep_last is not None:  # TrainConfig refuses a negative count, naming --keep-last
        train_cfg = dataclasses.replace(budget.train, keep_last=args.keep_last)
        budget = dataclasses.replace(budget, train=train_cfg)
    if args.time_budget is not None and args.updates is not None:
        raise JanusError("--time-budget (equal time) and --updates (equal updates): give one")
    report = run_quality_bench(
        args.data,
        args.out,
        budget,
        tuple(args.systems),
        device=args.device,
        limit=args.limit,
        bootstrap_samples=args.bootstrap_samples,
        distilled=args.distilled,
        time_budget_s=args.time_budget,
        only_settings=None if args.settings is None else tuple(args.settings),
        distilled_for=args.distilled_for,
    )
    print(format_quality(report))
    return 0


def _run_bench_speed(args: argparse.Namespace) -> int:
    from janusgen.bench import QUALITY, format_speed, run_speed_bench

    if not (args.out / QUALITY).is_file():
        raise JanusError(f"--out {args.out}: no {QUALITY}; run `janus bench quality --out {args.out}` first")
    if args.sentences <= 0 or args.batch_size <= 0:
        raise JanusError("--sentences and --batch-size must be > 0")
    print(
        format_speed(run_speed_bench(args.out, args.sentences, args.batch_size, args.device, args.quantize))
    )
    return 0


def _run_bench_compare(args: argparse.Namespace) -> int:
    from janusgen.bench import compare_benches, format_tests

    tests = compare_benches(args.out, args.baseline, args.system, args.bootstrap_samples)
    print(format_tests([test.to_dict() for test in tests]))
    return 0
