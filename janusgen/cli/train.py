"""`janus train`, `janus average` and `janus distill`: a run, averaged checkpoints, distilled data.

`janus train`'s training flags are TrainConfig's fields (janusgen.cli.options); the setup they make lives
in janusgen.training.setup.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from janusgen.cli.options import add_options, given_values, option_values, parse_assignments
from janusgen.config import DecodeConfig, DistillConfig
from janusgen.errors import JanusError
from janusgen.model.config import DATA_MODEL_FIELDS, ModelConfig
from janusgen.objective_config import ObjectiveConfig
from janusgen.presets import MODEL_PRESETS, OBJECTIVE_PRESETS, RECIPES, model_preset, objective_preset
from janusgen.training.config import TrainConfig

_DISTILL_DECODE = ("beam", "length_penalty", "max_len_a", "max_len_b", "max_tokens")  # AR beam search


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_distill(sub)
    _add_average(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train an ar, cmlm or janus model",
        description="Train on a folder made by `janus data prepare`. Writes checkpoints (out/last, out/best, "
        "out/checkpoints/step_N), log.jsonl and TensorBoard logs to --out. "
        "Under torchrun it trains with DDP.",
    )
    train.add_argument(
        "--data", type=Path, default=None, help="prepared data folder (default: the --config file's data.dir)"
    )
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument(
        "--objective",
        choices=tuple(OBJECTIVE_PRESETS),
        default=None,
        help="training objective (default janus)",
    )
    train.add_argument(
        "--preset", default=None, help=f"model size: {', '.join(MODEL_PRESETS)} (default small)"
    )
    train.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=None,
        help="defaults for the training options: paper (GPU scale, the authors' release's script: warmup "
        "10,000, no clipping, 200,000 updates; the paper's loss, KL terms on) or cpu (learns within minutes "
        "on a few CPU cores: small batches, high lr, warmup and curriculum as fractions of --time-budget, no "
        "dropout; for janus, the AR loss alone for the first half, then JANUS without the KL terms (the cpu "
        "recipe): the paper's 'without KL' ablation, not the paper's loss). Options given explicitly win "
        "(default paper)",
    )
    train.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a YAML or JSON file with the keys of a checkpoint's config.json (model, objective, train; "
        "data, init_from): a run's own RUN/last/config.json reproduces it; the options given here win",
    )
    train.add_argument("--resume", action="store_true", help="continue the run in --out from out/last")
    train.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start from this checkpoint's weights and model config (e.g. one made by `janus convert`: "
        "BART-JANUS); the data must be prepared with its tokenizer; the recipe defaults to finetune",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that holds another run, deleting that run's checkpoints and logs",
    )
    train.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    train.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="under torchrun: fail when a rank waits this long for the others (default %(default)s)",
    )
    train.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model setting, e.g. dropout=0.2 (repeatable)",
    )
    train.add_argument(
        "--objective-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an objective setting, e.g. kl_ar_aux=1.0 or encode_per_view=true (repeatable)",
    )
    paper, cpu = (
        RECIPES[name](model_preset("small"), objective_preset("janus"))[2] for name in ("paper", "cpu")
    )

    def shown(name: str) -> str | None:  # the recipes' defaults, where they differ
        default, cpu_default = getattr(paper, name), getattr(cpu, name)
        if default is None and cpu_default is None:
            return None
        if default == cpu_default:
            return f"{default}"
        return f"paper {'none' if default is None else default}, cpu {cpu_default}"

    add_options(train, TrainConfig, None, shown=shown)
    train.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from janusgen.training.setup import RunOptions, train_with_options

    options = RunOptions(
        preset=args.preset,
        objective=args.objective,
        recipe=args.recipe,
        init_from=args.init_from,
        config_file=args.config,
        model=parse_assignments(args.model_option, ModelConfig, "--model-option", DATA_MODEL_FIELDS),
        objective_options=parse_assignments(args.objective_option, ObjectiveConfig, "--objective-option"),
        train=given_values(args, TrainConfig),
    )
    summary = train_with_options(
        args.data,
        args.out,
        options,
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        dist_timeout_s=args.dist_timeout,
    )
    print(json.dumps(summary))
    return 0


def _add_average(sub: argparse._SubParsersAction) -> None:
    avg = sub.add_parser(
        "average",
        help="average the weights of several checkpoints",
        description="Average checkpoints of one run (e.g. the last N step checkpoints) into a new one.",
    )
    avg.add_argument("checkpoints", nargs="*", type=Path, help="checkpoint folders")
    avg.add_argument(
        "--last", type=int, default=None, metavar="N", help="with --run: average its last N step checkpoints"
    )
    avg.add_argument("--run", type=Path, default=None, help="a run folder (with --last)")
    avg.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output checkpoint folder: a new one, or one an earlier `janus average` wrote (replaced); never "
        "an input, the run folder or its last/best/checkpoints",
    )
    avg.set_defaults(func=_run_average)


def _run_average(args: argparse.Namespace) -> int:
    from janusgen.training.average import average_checkpoints
    from janusgen.training.run_dir import last_steps

    paths = list(args.checkpoints)
    if args.last is not None and args.run is None:
        raise JanusError(f"--last {args.last}: give the run folder with --run")
    if args.run is not None:
        if args.last is None:
            raise JanusError(f"--run {args.run}: pass --last N, the number of its last step checkpoints")
        paths += last_steps(args.run, args.last)
    if not paths:
        raise JanusError("give checkpoint folders, or --run DIR --last N")
    average_checkpoints(paths, args.out)
    print(f"averaged {len(paths)} checkpoints into {args.out}")
    return 0


def _add_distill(sub: argparse._SubParsersAction) -> None:
    d = DistillConfig()
    dist = sub.add_parser(
        "distill",
        help="translate a prepared training split with a model's AR view (sequence-level distillation)",
        description="Beam-translate the train split of --data with the AR view of --checkpoint (an ar or "
        "janus model trained on this data folder's vocabulary) into a new prepared data folder: the "
        "teacher's outputs as training targets, the original references kept beside them (train.ref.tgt) "
        "and the valid and test splits unchanged. Finished shards are kept in OUT.partial, so a killed "
        "run continues where it stopped when run again with the same options.",
    )
    dist.add_argument("--checkpoint", type=Path, required=True, help="teacher checkpoint folder")
    dist.add_argument("--data", type=Path, required=True, help="prepared data folder to distil")
    dist.add_argument("--out", type=Path, required=True, help="new prepared data folder")
    add_options(dist, DecodeConfig, d.decode, only=_DISTILL_DECODE)
    dist.add_argument(
        "--shard-pairs",
        type=int,
        default=d.shard_pairs,
        help="pairs per resumable shard (default %(default)s)",
    )
    dist.add_argument(
        "--dtype", default=d.dtype, help="teacher precision: auto, float32 or bfloat16 (default %(default)s)"
    )
    dist.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    dist.add_argument("--overwrite", action="store_true", help="replace an --out that holds prepared data")
    dist.set_defaults(func=_run_distill)


def _run_distill(args: argparse.Namespace) -> int:
    from janusgen.distill import distill, format_distill_report
    from janusgen.hardware import pick_device

    decode = DecodeConfig(mode="ar", **option_values(args, DecodeConfig, only=_DISTILL_DECODE))
    cfg = DistillConfig(decode=decode, shard_pairs=args.shard_pairs, dtype=args.dtype)
    meta = distill(args.checkpoint, args.data, args.out, cfg, str(pick_device(args.device)), args.overwrite)
    print(format_distill_report(meta, args.out))
    return 0
