"""`janus data bible` and `janus data prepare`: build and prepare parallel corpora."""

from __future__ import annotations

import argparse
from pathlib import Path

from janusgen.config import BibleConfig, PrepareConfig
from janusgen.data.tasks import TASKS


def add_commands(sub: argparse._SubParsersAction) -> None:
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
