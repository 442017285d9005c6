"""The `janus` command: `janus data bible|prepare`, and later `train`, `generate`, `evaluate`, `bench`.

Each subcommand parses its options here and calls one function of the package; the work lives there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

from janusgen.config import (
    BENCH_BUDGET_UPDATES,
    BEST_METRICS,
    DATA_MODEL_FIELDS,
    DECODE_MODES,
    DEMO_TIME_BUDGET_S,
    MODEL_PRESETS,
    OBJECTIVES,
    PRECISIONS,
    QUANTIZATIONS,
    RECIPES,
    BibleConfig,
    DecodeConfig,
    DistillConfig,
    ModelConfig,
    ObjectiveConfig,
    PrepareConfig,
    TrainConfig,
    cpu_recipe,
    decode_config,
    from_dict,
    model_preset,
    objective_preset,
    to_dict,
)
from janusgen.data.sources import TASKS
from janusgen.errors import JanusError

# ---------------------------------------------------------------------------------------------- data


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build and prepare parallel corpora")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="{bible,prepare}")

    d = BibleConfig()
    bible = dsub.add_parser(
        "bible",
        help="build the verse-aligned Bible corpus from Debian's SWORD packages",
        description="Build a verse-aligned parallel corpus (default Spanish RV1909 -> English WEB) from "
        "Debian's sword-text-* packages, read with pysword. Writes {split}.{source} and {split}.{target} "
        "text files and manifest.json to --out.",
    )
    bible.add_argument("--out", type=Path, required=True, help="output folder for the text corpus")
    bible.add_argument(
        "--source", default=d.source, help="source module: sparv, web or kjv (default %(default)s)"
    )
    bible.add_argument("--target", default=d.target, help="target module (default %(default)s)")
    bible.add_argument(
        "--max-words",
        type=int,
        default=d.max_words,
        help="drop verses longer than this (default %(default)s)",
    )
    bible.add_argument(
        "--max-ratio",
        type=float,
        default=d.max_ratio,
        help="drop pairs whose length ratio exceeds this (default %(default)s)",
    )
    bible.add_argument(
        "--sword-path",
        default=None,
        help="a SWORD library folder (with mods.d/) to read instead of searching",
    )
    bible.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="where fetched .deb packages are unpacked (default ~/.cache/janusgen/sword)",
    )
    bible.add_argument(
        "--prepare", type=Path, default=None, metavar="DATA", help="then run `janus data prepare` into DATA"
    )
    bible.add_argument(
        "--vocab-size",
        type=int,
        default=PrepareConfig().vocab_size,
        help="vocabulary size for --prepare (default %(default)s)",
    )
    bible.add_argument(
        "--overwrite",
        action="store_true",
        help="let --prepare replace an earlier prepared folder (never one holding other files)",
    )
    bible.set_defaults(func=_run_data_bible)

    p = PrepareConfig()
    prep = dsub.add_parser(
        "prepare",
        help="train a SentencePiece vocabulary and binarize a parallel corpus",
        description="Read a parallel corpus (line-aligned text files, TSV, JSONL or a Hugging Face dataset), "
        "train a joint SentencePiece model on its training split and write memory-mapped token arrays.",
    )
    src = prep.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--text", type=Path, metavar="DIR", help="folder with {split}.{src} and {split}.{tgt} files"
    )
    src.add_argument(
        "--tsv", type=Path, metavar="DIR", help="folder with {split}.tsv files: source<TAB>target"
    )
    src.add_argument(
        "--jsonl",
        type=Path,
        metavar="DIR",
        help="folder with {split}.jsonl files, fields --src/--tgt (or translation.{src})",
    )
    src.add_argument(
        "--hf-dataset",
        metavar="NAME",
        help="a Hugging Face dataset name (hub) or a folder saved with save_to_disk",
    )
    prep.add_argument("--hf-config", default=None, help="Hugging Face dataset configuration (e.g. de-en)")
    prep.add_argument(
        "--task",
        default=None,
        choices=sorted(TASKS),
        help="with --hf-dataset: a generation task whose columns make the pairs (xsum: document -> summary; "
        "cnn_dailymail: article -> highlights; squad_qg: answer [SEP] context -> question; personachat: "
        "persona [SEP] history -> response); --src/--tgt then only name the sides",
    )
    prep.add_argument("--src", default=None, help="source language / file suffix / column name")
    prep.add_argument("--tgt", default=None, help="target language / file suffix / column name")
    prep.add_argument("--out", type=Path, required=True, help="output folder for the prepared data")
    prep.add_argument(
        "--splits", default=",".join(p.splits), help="comma-separated splits to read (default %(default)s)"
    )
    prep.add_argument(
        "--vocab-size",
        type=int,
        default=p.vocab_size,
        help="SentencePiece vocabulary size (default %(default)s)",
    )
    prep.add_argument(
        "--model-type", default=p.model_type, choices=["unigram", "bpe"], help="SentencePiece model type"
    )
    prep.add_argument(
        "--tokenizer",
        default=None,
        metavar="PATH_OR_NAME",
        help="use this pre-trained tokenizer instead of training SentencePiece: a tokenizer.json, a folder "
        "holding one, or a Hugging Face name (e.g. facebook/bart-base, needs the hf extra); stored in --out",
    )
    prep.add_argument(
        "--threads", type=int, default=p.num_threads, help="encoding threads (default %(default)s)"
    )
    prep.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier prepared folder in --out (refused if it holds files prepare did not write)",
    )
    prep.set_defaults(func=_run_data_prepare)


def _run_data_bible(args: argparse.Namespace) -> int:
    from janusgen.data.bible import build_bible_corpus

    cfg = BibleConfig(
        source=args.source,
        target=args.target,
        max_words=args.max_words,
        max_ratio=args.max_ratio,
        sword_path=args.sword_path,
    )
    if args.prepare is not None:  # refuse a bad --prepare before minutes are spent on the corpus
        from janusgen.data.prepare import check_output

        prepare_cfg = PrepareConfig(vocab_size=args.vocab_size)
        check_output(args.prepare, args.overwrite)
    manifest = build_bible_corpus(args.out, cfg, cache_dir=args.cache)
    _print_bible_stats(manifest)
    if args.prepare is not None:
        from janusgen.data.prepare import prepare
        from janusgen.data.sources import TextFilesSource

        meta = prepare(
            TextFilesSource(args.out, cfg.source, cfg.target),
            args.prepare,
            prepare_cfg,
            overwrite=args.overwrite,
        )
        _print_prepare_stats(meta)
    return 0


def _run_data_prepare(args: argparse.Namespace) -> int:
    from janusgen.data.prepare import prepare
    from janusgen.data.sources import open_source

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    cfg = PrepareConfig(
        vocab_size=args.vocab_size,
        model_type=args.model_type,
        num_threads=args.threads,
        splits=splits,
        tokenizer=args.tokenizer,
    )
    source = open_source(
        text=args.text,
        tsv=args.tsv,
        jsonl=args.jsonl,
        hf_dataset=args.hf_dataset,
        hf_config=args.hf_config,
        src=args.src,
        tgt=args.tgt,
        task_name=args.task,
    )
    meta = prepare(source, args.out, cfg, overwrite=args.overwrite)
    _print_prepare_stats(meta)
    return 0


def _print_bible_stats(manifest: dict) -> None:
    from janusgen.data.bible import format_bible_report

    print(format_bible_report(manifest))


def _print_prepare_stats(meta: dict) -> None:
    from janusgen.data.prepare import format_prepare_report

    print(format_prepare_report(meta))


# --------------------------------------------------------------------------------------------- train


def parse_duration(text: str) -> float:
    """Seconds in "90s", "15m", "1.5h"; a bare number means minutes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m or 1.5h")
    value, unit = float(match.group(1)), match.group(2) or "m"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def parse_assignments(
    items: list[str], cls: type, option: str, fixed: tuple[str, ...] = ()
) -> dict[str, Any]:
    """KEY=VALUE pairs for dataclass `cls`; values are JSON (numbers, true/false) or plain strings. The
    fields in `fixed` are set from the data and refused (setting them would be silently ignored)."""
    fields = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if sep and key in fixed:
            raise JanusError(
                f"{option} {item}: set from the data (its tokenizer in meta.json), not by an option: "
                f"{', '.join(fixed)} always follow the prepared data"
            )
        if not sep or key not in fields:
            raise JanusError(
                f"{option} {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}"
            )
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


_TRAIN_OPTIONS = {  # option -> (TrainConfig field, type, metavar, help)
    "--max-updates": ("max_updates", int, "UPDATES", "stop after this many updates"),
    "--time-budget": (
        "time_budget_s",
        parse_duration,
        "DURATION",
        "stop after this much training time (90s, 15m, 1.5h)",
    ),
    "--stop-at": (
        "stop_at",
        int,
        "UPDATE",
        "pause after this update, the schedules still spanning --max-updates (--resume goes on), e.g. at the "
        "end of the AR-only phase to distil with it",
    ),
    "--max-tokens": ("max_tokens", int, "TOKENS", "padded tokens per batch and rank"),
    "--update-freq": ("update_freq", int, "FREQ", "batches per update (gradient accumulation)"),
    "--lr": ("lr", float, "LR", "peak learning rate"),
    "--warmup": (
        "warmup_updates",
        int,
        "UPDATES",
        "linear warmup updates before the inverse square-root decay",
    ),
    "--warmup-fraction": (
        "warmup_fraction",
        float,
        "FRACTION",
        "the warmup as a fraction of the run (of --time-budget when given), instead of --warmup",
    ),
    "--weight-decay": ("weight_decay", float, "DECAY", "AdamW weight decay"),
    "--clip-norm": ("clip_norm", float, "NORM", "gradient clipping norm (0: off)"),
    "--precision": (
        "precision",
        str,
        "PRECISION",
        f"{', '.join(PRECISIONS)}; auto: bf16 on a GPU that has it (else fp16), on a CPU only where bf16 "
        "is native and faster, else fp32",
    ),
    "--seed": ("seed", int, "SEED", "random seed (batches, masks, dropout, initialisation)"),
    "--log-every": ("log_every", int, "EVERY", "updates between log lines"),
    "--validate-every": ("validate_every", int, "EVERY", "updates between validations and checkpoints"),
    "--valid-bleu-sentences": (
        "valid_bleu_sentences",
        int,
        "SENTENCES",
        "valid pairs for the quick BLEU (0: off)",
    ),
    "--keep-last": ("keep_last", int, "LAST", "step checkpoints to keep besides best and last"),
    "--best-metric": ("best_metric", str, "METRIC", f"what `best` means: {', '.join(BEST_METRICS)}"),
    "--data-workers": (
        "data_workers",
        int,
        "WORKERS",
        "DataLoader processes per rank that collate and mask batches ahead (default: 2 on a GPU, 0 on a CPU)",
    ),
    "--deterministic": (
        "deterministic",
        bool,
        None,
        "deterministic kernels (and cuBLAS's fixed workspace): a rerun on the same hardware, software and "
        "number of ranks gives bit-identical weights; batches and masks never depend on the number of ranks, "
        "the order of the gradient sums does",
    ),
    "--compile": (
        "compile",
        bool,
        None,
        "torch.compile the model and loss, with dynamic shapes (batches differ in length)",
    ),
    "--ar-targets": (
        "ar_targets",
        str,
        "TARGETS",
        "data: the AR view learns the data's targets; references: on data made by `janus distill`, the "
        "original references it keeps (the NAR/AUX views learn the teacher's outputs); may change with "
        "--resume, to go on from the AR-only phase on data the run's own AR view distilled",
    ),
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    train = sub.add_parser(
        "train",
        help="train an ar, cmlm or janus model",
        description="Train on a folder made by `janus data prepare`. Writes checkpoints (out/last, out/best, "
        "out/checkpoints/step_N), log.jsonl and TensorBoard logs to --out. "
        "Under torchrun it trains with DDP.",
    )
    train.add_argument("--data", type=Path, required=True, help="prepared data folder")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument(
        "--objective", choices=OBJECTIVES, default=None, help="training objective (default janus)"
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
    cpu = cpu_recipe(model_preset("small"), objective_preset("janus"))[2]
    for flag, (name, kind, metavar, text) in _TRAIN_OPTIONS.items():
        if kind is bool:  # a switch, off unless given
            train.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=text)
            continue
        default, cpu_default = getattr(d, name), getattr(cpu, name)
        shown = f"{default}" if default == cpu_default else f"paper {default}, cpu {cpu_default}"
        train.add_argument(
            flag,
            dest=name,
            type=kind,
            default=None,
            metavar=metavar,
            help=f"{text} (default {shown})" if default is not None or cpu_default is not None else text,
        )
    train.set_defaults(func=_run_train)


_PRESET_FIELDS = ("d_model", "ffn_dim", "heads", "encoder_layers", "decoder_layers")


def _check_resume_matches(args: argparse.Namespace) -> None:
    """--resume takes the model and objective from the checkpoint: a --preset or --objective that
    says otherwise is an error, not silently ignored (one that agrees is fine)."""
    from janusgen.checkpoint import read_config
    from janusgen.training.recipe import resume_point

    if args.preset is None and args.objective is None:
        return
    where = resume_point(args.out)
    if where is None:
        return  # train() says that there is nothing to resume
    config = read_config(where)
    if args.objective is not None and args.objective != config["objective"]["name"]:
        raise JanusError(
            f"--objective {args.objective}: the run in {args.out} trains {config['objective']['name']}; "
            "--resume takes the objective from the checkpoint (drop --objective)"
        )
    if args.preset is not None:
        preset = model_preset(args.preset)
        differ = [f for f in _PRESET_FIELDS if config["model"].get(f) != getattr(preset, f)]
        if differ:
            have = ", ".join(f"{f} {config['model'].get(f)}" for f in differ)
            raise JanusError(
                f"--preset {args.preset}: the model of the run in {args.out} differs ({have}); "
                "--resume takes the model from the checkpoint (drop --preset)"
            )


def _run_train(args: argparse.Namespace) -> int:
    from janusgen.training.recipe import RESUMABLE, train

    given = {
        name: getattr(args, name)
        for name, _, _, _ in _TRAIN_OPTIONS.values()
        if getattr(args, name) is not None
    }
    if args.resume:
        fixed = sorted(set(given) - set(RESUMABLE))
        if fixed or args.model_option or args.objective_option:
            names = (
                fixed
                + (["--model-option"] if args.model_option else [])
                + (["--objective-option"] if args.objective_option else [])
            )
            raise JanusError(
                f"--resume takes the model and training setup from the checkpoint; only "
                f"{', '.join(RESUMABLE)} may change (got {', '.join(names)})"
            )
        if args.overwrite:
            raise JanusError("--resume continues the run in --out and --overwrite deletes it: give one")
        if args.init_from is not None:
            raise JanusError("--resume continues the run in --out; --init-from starts a new one: give one")
        if args.recipe is not None:
            raise JanusError(
                f"--recipe {args.recipe}: --resume takes the training setup from the checkpoint; only "
                f"{', '.join(RESUMABLE)} may change"
            )
        _check_resume_matches(args)
        summary = train(
            args.data,
            args.out,
            None,
            None,
            TrainConfig(),
            resume=True,
            device=args.device,
            dist_timeout_s=args.dist_timeout,
            resume_overrides=given,
        )
    else:
        # preset (or the --init-from checkpoint's model) -> recipe -> the options given: each later one wins
        if args.init_from is not None:
            if args.preset is not None:
                raise JanusError("--init-from takes the model from the checkpoint: drop --preset")
            from janusgen.checkpoint import CONFIG_FILE, read_config

            where = str(args.init_from / CONFIG_FILE)
            base_model = from_dict(ModelConfig, read_config(args.init_from)["model"], where=where)
        else:
            base_model = model_preset(args.preset or "small")
        recipe = args.recipe or ("finetune" if args.init_from is not None else "paper")
        model_cfg, objective_cfg, train_cfg = RECIPES[recipe](
            base_model, objective_preset(args.objective or "janus")
        )
        model_cfg = dataclasses.replace(
            model_cfg,
            **parse_assignments(args.model_option, ModelConfig, "--model-option", DATA_MODEL_FIELDS),
        )
        objective_cfg = dataclasses.replace(
            objective_cfg, **parse_assignments(args.objective_option, ObjectiveConfig, "--objective-option")
        )
        if "warmup_updates" in given:  # an explicit --warmup counts updates, whatever the recipe says
            given.setdefault("warmup_fraction", None)
        summary = train(
            args.data,
            args.out,
            model_cfg,
            objective_cfg,
            dataclasses.replace(train_cfg, **given),
            device=args.device,
            dist_timeout_s=args.dist_timeout,
            overwrite=args.overwrite,
            init_from=args.init_from,
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
    from janusgen.checkpoint import average_checkpoints

    paths = list(args.checkpoints)
    if args.last is not None and args.run is None:
        raise JanusError(f"--last {args.last}: give the run folder with --run")
    if args.run is not None:
        steps = sorted((args.run / "checkpoints").glob("step_*"))
        if args.last is None:
            raise JanusError(f"--run {args.run}: pass --last N, the number of its last step checkpoints")
        if not steps:
            raise JanusError(f"--run {args.run}: no step checkpoints in {args.run / 'checkpoints'}")
        if not 1 <= args.last <= len(steps):
            raise JanusError(
                f"--last {args.last}: must be between 1 and {len(steps)} (the step checkpoints in {args.run})"
            )
        paths += steps[-args.last :]
    if not paths:
        raise JanusError("give checkpoint folders, or --run DIR --last N")
    average_checkpoints(paths, args.out)
    print(f"averaged {len(paths)} checkpoints into {args.out}")
    return 0


def _add_distill(sub: argparse._SubParsersAction) -> None:
    d = DistillConfig()
    dd = d.decode
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
    dist.add_argument("--beam", type=int, default=dd.beam, help="beam size (default %(default)s)")
    dist.add_argument("--length-penalty", type=float, default=dd.length_penalty, help="(default %(default)s)")
    dist.add_argument("--max-len-a", type=float, default=dd.max_len_a, help="(default %(default)s)")
    dist.add_argument("--max-len-b", type=int, default=dd.max_len_b, help="(default %(default)s)")
    dist.add_argument(
        "--max-tokens", type=int, default=dd.max_tokens, help="source tokens per batch (default %(default)s)"
    )
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

    decode = decode_config(
        mode="ar",
        beam=args.beam,
        length_penalty=args.length_penalty,
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        max_tokens=args.max_tokens,
    )
    cfg = DistillConfig(decode=decode, shard_pairs=args.shard_pairs, dtype=args.dtype)
    meta = distill(args.checkpoint, args.data, args.out, cfg, str(pick_device(args.device)), args.overwrite)
    print(format_distill_report(meta, args.out))
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    conv = sub.add_parser(
        "convert",
        help="turn a pre-trained Hugging Face BART into a janusgen checkpoint (BART-JANUS)",
        description="Load a BartForConditionalGeneration (hub name or local folder; needs the hf extra), map "
        "its weights into the two-stream model, add a freshly initialised length predictor and write a "
        "self-contained checkpoint (weights, config.json, tokenizer.json). Its AR view is the BART itself; "
        "fine-tune it with `janus train --init-from`.",
    )
    conv.add_argument("--hf", required=True, metavar="NAME_OR_DIR", help="e.g. facebook/bart-base")
    conv.add_argument("--out", type=Path, required=True, help="output checkpoint folder")
    conv.add_argument(
        "--max-target-length",
        type=int,
        default=None,
        help="largest target length the length classifier predicts (default: BART's positions - 2)",
    )
    conv.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from janusgen.model.bart import convert

    if args.out.exists():
        raise JanusError(f"--out {args.out} already exists; choose another folder")
    print(json.dumps(convert(args.hf, args.out, args.max_target_length)))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "export",
        help="export a checkpoint's AR view to a Hugging Face folder or a CTranslate2 model",
        description="Write the AR view of a model whose decoder is a standard one (ar_stream=content, no "
        "relative-position bias: BART-JANUS from `janus convert`, or a model trained with those options) as "
        "a Hugging Face BART / mBART / Pegasus folder with its tokenizer and generation config, or as a "
        "CTranslate2 model converted from it (needs the export extra). Every preset decodes AR from the "
        "query stream and is refused. See docs/export.md.",
    )
    exp.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (e.g. RUN/best)")
    exp.add_argument("--format", required=True, choices=("hf", "ctranslate2"), help="what to write")
    exp.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    exp.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from janusgen.export import export

    print(json.dumps(export(args.checkpoint, args.out, args.format)))
    return 0


# ------------------------------------------------------------------------------- generate / evaluate


def _add_decode_options(parser: argparse.ArgumentParser) -> None:
    d = DecodeConfig()
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (e.g. RUN/best)")
    parser.add_argument(
        "--mode",
        choices=DECODE_MODES,
        default=d.mode,
        help="ar (beam search), nar (Mask-Predict), or speculative: the NAR view drafts the rest of the "
        "sentence and the AR view verifies it in one pass, keeping the longest prefix it agrees with; the "
        "output is AR greedy's (--beam is ignored) up to floating-point near-ties (where the two best "
        "tokens are within rounding error, either may be chosen), faster where the two views agree",
    )
    parser.add_argument(
        "--beam", type=int, default=d.beam, help="AR beam size; 1 = greedy (default %(default)s)"
    )
    parser.add_argument(
        "--iterations", type=int, default=d.iterations, help="NAR refinement passes (default %(default)s)"
    )
    parser.add_argument(
        "--length-beam", type=int, default=d.length_beam, help="NAR length candidates (default %(default)s)"
    )
    parser.add_argument(
        "--length-offsets",
        default=None,
        metavar="LIST",
        help="NAR: candidates at the predicted length plus these offsets, e.g. -1,0,1",
    )
    parser.add_argument(
        "--rerank", action="store_true", help="NAR: pick the candidate the model's AR view scores best"
    )
    parser.add_argument(
        "--early-stop",
        action="store_true",
        help="NAR: stop refining once a pass changes no token (fewer passes; the latency of one sentence)",
    )
    parser.add_argument(
        "--collapse-repeats",
        action="store_true",
        help='NAR: keep each run of a repeated token once ("the the" -> "the"), before --rerank',
    )
    parser.add_argument("--length-penalty", type=float, default=d.length_penalty, help="score / length^this")
    parser.add_argument("--max-len-a", type=float, default=d.max_len_a, help="output limit a*|x|+b: a")
    parser.add_argument("--max-len-b", type=int, default=d.max_len_b, help="output limit a*|x|+b: b")
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens, help="source tokens per batch")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when there is one), cpu, cuda or cuda:N (default %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        help="auto, float32, bfloat16 or float16; auto: the rule of --precision auto of `janus train` "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="int8: int8 weights for every Linear layer (PyTorch's dynamic quantization; CPU, float32 "
        "activations): faster on a CPU, BLEU in BENCHMARKS.md (default %(default)s)",
    )


def _decode_config(args: argparse.Namespace) -> DecodeConfig:
    offsets = None
    if args.length_offsets is not None:
        try:
            offsets = [int(x) for x in args.length_offsets.split(",") if x.strip()]
        except ValueError as e:
            raise JanusError(
                f"--length-offsets {args.length_offsets!r}: expected integers like -1,0,1"
            ) from e
    return decode_config(
        mode=args.mode,
        beam=args.beam,
        iterations=args.iterations,
        length_beam=args.length_beam,
        length_offsets=offsets,
        rerank=args.rerank,
        collapse_repeats=args.collapse_repeats,
        early_stop=args.early_stop,
        length_penalty=args.length_penalty,
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        max_tokens=args.max_tokens,
    )


def _add_generate(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate",
        help="translate text with a checkpoint, in AR or NAR mode",
        description="Read one input per line (stdin or --input) and write one output per line "
        "(stdout or --output), in order, as batches finish.",
    )
    _add_decode_options(gen)
    gen.add_argument("--input", type=Path, default=None, help="input text file (default: stdin)")
    gen.add_argument("--output", type=Path, default=None, help="output file (default: stdout)")
    gen.add_argument("--scores", action="store_true", help="write 'score<TAB>text' instead of text")
    gen.add_argument(
        "--buffer-lines", type=int, default=512, help="lines read per batch group (default %(default)s)"
    )
    gen.set_defaults(func=_run_generate)


class _InputLines:
    """The lines of `--input` or stdin, read as bytes and split on "\\n" only, the same way for both: a
    lone "\\r" stays inside its line, the "\\r" of a CRLF ending is dropped. A line that is not UTF-8 (or
    a read error) ends the lines and is kept in `error`, so that every line before it is still
    translated and written."""

    def __init__(self, stream: Any, name: str) -> None:
        self.stream, self.name = stream, name
        self.error: JanusError | None = None
        self.count = 0

    def __iter__(self) -> Any:
        offset = 0  # bytes of the stream before the current line
        try:
            for raw in self.stream:  # a text stream without .buffer (a test's StringIO) gives str lines
                newline, cr = (b"\n", b"\r") if isinstance(raw, bytes) else ("\n", "\r")
                line = raw.removesuffix(newline).removesuffix(cr)
                if isinstance(line, bytes):
                    try:
                        line = line.decode("utf-8")
                    except UnicodeDecodeError as e:
                        self.error = JanusError(
                            f"{self.name}:{self.count + 1}: not UTF-8 text ({e.reason} at byte offset "
                            f"{offset + e.start} of {'the file' if self.name != 'stdin' else 'stdin'})"
                        )
                        return
                    offset += len(raw)
                self.count += 1
                yield line
        except OSError as e:
            self.error = JanusError(f"cannot read {self.name} after line {self.count}: {e.strerror or e}")


def _same_file(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    return a is not None and b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _fstat(stream: Any) -> os.stat_result | None:
    try:
        return os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _check_generate_files(input_path: Path | None, output: Path | None) -> None:
    """Refuse an --output that would overwrite the input (also through a link) or cannot be written."""
    if input_path is not None:
        try:
            source = os.stat(input_path)
        except OSError as e:
            raise JanusError(f"cannot read --input {input_path}: {e.strerror}") from e
    else:
        source = _fstat(sys.stdin)
    if source is not None and not stat.S_ISREG(source.st_mode):
        source = None  # a terminal or pipe: stdout may well be the same terminal
    what = f"--input {input_path}" if input_path is not None else "stdin"
    if output is None:
        if _same_file(source, _fstat(sys.stdout)):
            raise JanusError(f"stdout is the same file as {what}: it would overwrite its own input")
        return
    try:
        target = os.stat(output)
    except OSError:
        target = None
    if _same_file(source, target):
        raise JanusError(
            f"--output {output} is the same file as {what}: it would overwrite its own input; "
            "write to another file"
        )
    if target is not None and stat.S_ISDIR(target.st_mode):
        raise JanusError(f"--output {output} is a folder; give a file name")
    folder = Path(os.path.realpath(output)).parent
    if not folder.is_dir():
        raise JanusError(f"--output {output}: folder {output.parent} does not exist")


def _run_generate(args: argparse.Namespace) -> int:
    from janusgen.decoding.translator import Translator
    from janusgen.fileio import NO_SPACE_ERRNOS, atomic_file, write_error

    if args.buffer_lines < 1:
        raise JanusError(f"--buffer-lines {args.buffer_lines}: must be at least 1")
    cfg = _decode_config(args)
    _check_generate_files(args.input, args.output)
    translator = Translator.load(args.checkpoint, args.device, args.dtype, args.quantize)
    with contextlib.ExitStack() as stack:
        if args.input is None:
            lines = _InputLines(getattr(sys.stdin, "buffer", sys.stdin), "stdin")
        else:
            try:
                lines = _InputLines(stack.enter_context(open(args.input, "rb")), str(args.input))
            except OSError as e:
                raise JanusError(f"cannot read --input {args.input}: {e.strerror}") from e
        where = "stdout" if args.output is None else f"--output {args.output}"
        if args.output is None:
            sink = sys.stdout
        elif os.path.exists(args.output) and not os.path.isfile(args.output):  # /dev/null, a FIFO
            sink = stack.enter_context(open(args.output, "w", encoding="utf-8"))
        else:  # a temporary file renamed over --output at the end: a failed run leaves the old one
            sink = stack.enter_context(atomic_file(args.output))
        try:
            for n, out in enumerate(translator.generate_stream(lines, cfg, args.buffer_lines), start=1):
                sink.write(f"{out.score:.4f}\t{out.text}\n" if args.scores else f"{out.text}\n")
                if n % args.buffer_lines == 0:
                    sink.flush()
            sink.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            if e.errno in NO_SPACE_ERRNOS:
                raise write_error(Path(where.removeprefix("--output ")), e) from None
            raise JanusError(f"cannot write {where}: {e.strerror or e}") from e
        if lines.error is not None:
            done = (
                f"the {lines.count} line(s) before it were written"
                if sink is sys.stdout
                else f"{where} was not written"
            )
            raise JanusError(f"{lines.error}; {done}")
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from janusgen.serving.config import ServeConfig

    d = ServeConfig()
    srv = sub.add_parser(
        "serve",
        help="an HTTP JSON translation service with micro-batching (pip install janusgen[serve])",
        description="Load a checkpoint once and serve POST /translate, GET /health and GET /metrics "
        "(Prometheus text). Concurrent requests with the same settings are gathered for up to "
        "--max-wait-ms into one token-budgeted batch.",
    )
    srv.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (e.g. RUN/best)")
    srv.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    srv.add_argument("--port", type=int, default=d.port, help="port (default %(default)s)")
    srv.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when there is one), cpu, cuda or cuda:N (default %(default)s)",
    )
    srv.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default auto)")
    srv.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="int8: int8 weights for every Linear layer (PyTorch's dynamic quantization; CPU, float32 "
        "activations): faster on a CPU, BLEU in BENCHMARKS.md (default %(default)s)",
    )
    for name, help_text in ServeConfig.OPTION_HELP.items():
        value = getattr(d, name)
        srv.add_argument(
            "--" + name.replace("_", "-"),
            type=type(value),
            default=value,
            help=f"{help_text} (default %(default)s)",
        )
    srv.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from janusgen.serving.config import ServeConfig

    values = {name: getattr(args, name) for name in ServeConfig.OPTION_HELP}
    cfg = ServeConfig(host=args.host, port=args.port, **values)  # checks every value
    try:
        from janusgen.serving.server import run_server
    except ImportError as e:
        raise JanusError(
            f"janus serve needs its extra: pip install 'janusgen[serve]' ({e.name} is missing)"
        ) from e
    from janusgen.decoding.translator import Translator

    translator = Translator.load(args.checkpoint, args.device, args.dtype, args.quantize)
    run_server(translator, cfg)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="BLEU, chrF and speed of a checkpoint on a prepared split",
        description="Translate a split of a prepared data folder and score it with sacreBLEU "
        "(BLEU and chrF, with signatures) against its references; report sentences/s and "
        "target tokens/s.",
    )
    _add_decode_options(ev)
    ev.add_argument("--data", type=Path, required=True, help="prepared data folder")
    ev.add_argument("--split", default="test", help="split to evaluate (default %(default)s)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    ev.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    ev.add_argument("--hypotheses", type=Path, default=None, help="also write the outputs, one per line")
    ev.add_argument(
        "--metric",
        choices=("auto", "bleu", "rouge"),
        default="auto",
        help="rouge: also ROUGE-1/2/L F1 (rouge-score); auto (default): rouge for data prepared with a "
        "--task (summarisation, question generation, dialogue), else BLEU and chrF only",
    )
    ev.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from janusgen.data.dataset import PairDataset
    from janusgen.decoding.translator import Translator
    from janusgen.evaluation.evaluate import evaluate, format_table
    from janusgen.fileio import atomic_file, check_writable_folder

    cfg = _decode_config(args)
    for option, path in (("--json", args.json), ("--hypotheses", args.hypotheses)):
        if path is not None:  # fail now, not after the decoding
            if path.is_dir():
                raise JanusError(f"{option} {path} is a folder; give a file name")
            check_writable_folder(Path(os.path.realpath(path)).parent, f"{option} {path}")
    dataset = PairDataset.open(args.data, args.split)
    sources, references = dataset.texts()
    if args.limit is not None:
        sources, references = sources[: args.limit], references[: args.limit]
    with_rouge = args.metric == "rouge"
    if args.metric == "auto":
        from janusgen.data.sources import TASKS

        task_name = (dataset.meta.get("source") or {}).get("task")
        with_rouge = task_name in TASKS and TASKS[task_name].metric == "rouge"
    translator = Translator.load(args.checkpoint, args.device, args.dtype, args.quantize)
    result, hyps = evaluate(translator, sources, references, cfg, with_rouge)
    print(format_table([result]))
    if args.json is not None:
        record = {
            **result.to_dict(),
            "checkpoint": str(args.checkpoint),
            "data": str(args.data),
            "split": args.split,
            "decode": to_dict(cfg),
            "device": args.device,
            "dtype": args.dtype,
            "quantize": args.quantize,
        }
        with atomic_file(args.json) as f:
            f.write(json.dumps(record, indent=2) + "\n")
    if args.hypotheses is not None:
        with atomic_file(args.hypotheses) as f:
            f.write("".join(f"{h}\n" for h in hyps))
    return 0


# ---------------------------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> None:
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
        type=parse_duration,
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


# --------------------------------------------------------------------------------------------- bench


def _add_bench(sub: argparse._SubParsersAction) -> None:
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
        choices=tuple(BENCH_BUDGET_UPDATES),
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
        + ", ".join(f"{name} {n}" for name, n in BENCH_BUDGET_UPDATES.items())
        + ")",
    )
    quality.add_argument(
        "--time-budget",
        type=parse_duration,
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
    from janusgen.bench import BUDGETS, DEFAULT_UPDATES, format_quality, run_quality_bench

    updates = args.updates if args.updates is not None else DEFAULT_UPDATES[args.budget]
    if updates <= 0:
        raise JanusError(f"--updates {updates}: must be > 0")
    budget = BUDGETS[args.budget](updates, args.seed)
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


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus",
        description="Train and run JANUS models: one encoder-decoder, "
        "autoregressive and non-autoregressive decoding.",
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="{demo,data,train,distill,generate,evaluate,serve,average,convert,export,bench}",
    )
    _add_demo(sub)
    _add_data(sub)
    _add_train(sub)
    _add_distill(sub)
    _add_generate(sub)
    _add_evaluate(sub)
    _add_serve(sub)
    _add_average(sub)
    _add_convert(sub)
    _add_export(sub)
    _add_bench(sub)
    return parser


def _error(message: str) -> int:
    """Print `janus: error: message` on a line of its own (a progress bar the failure interrupted is
    closed first) and return the exit status of a usage or input error."""
    with contextlib.suppress(Exception):
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    print(f"janus: error: {message}", file=sys.stderr)
    return 2


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """Python warnings (a truncated input, bf16 on a CPU that emulates it) as one line, like errors."""
    print(f"janus: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except JanusError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        print("janus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`janus generate ... | head -1`): stop quietly, as `yes | head -1` does.
        # As Python's documentation recommends, point stdout at devnull so that the flush at exit
        # does not fail again.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            stdout = sys.stdout.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout)
            os.close(devnull)
        return 141  # 128 + SIGPIPE, the status of a command a closed pipe stops
    except OSError as e:  # a file system error no command turned into a JanusError: still one line
        from janusgen.fileio import write_error, written_file

        return _error(str(write_error(written_file(e) or Path.cwd(), e)))
