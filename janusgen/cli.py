"""The `janus` command: `janus data bible|prepare`, and later `train`, `generate`, `evaluate`, `bench`.

Each subcommand parses its options here and calls one function of the package; the work lives there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from janusgen.config import BibleConfig, PrepareConfig
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
    bible.add_argument("--source", default=d.source, help="source module: sparv, web or kjv (default %(default)s)")
    bible.add_argument("--target", default=d.target, help="target module (default %(default)s)")
    bible.add_argument("--max-words", type=int, default=d.max_words, help="drop verses longer than this (default %(default)s)")
    bible.add_argument("--max-ratio", type=float, default=d.max_ratio, help="drop pairs whose length ratio exceeds this (default %(default)s)")
    bible.add_argument("--sword-path", default=None, help="a SWORD library folder (with mods.d/) to read instead of searching")
    bible.add_argument("--cache", type=Path, default=None, help="where fetched .deb packages are unpacked (default ~/.cache/janusgen/sword)")
    bible.add_argument("--prepare", type=Path, default=None, metavar="DATA", help="then run `janus data prepare` into DATA")
    bible.add_argument("--vocab-size", type=int, default=PrepareConfig().vocab_size, help="vocabulary size for --prepare (default %(default)s)")
    bible.set_defaults(func=_run_data_bible)

    p = PrepareConfig()
    prep = dsub.add_parser(
        "prepare",
        help="train a SentencePiece vocabulary and binarize a parallel corpus",
        description="Read a parallel corpus (line-aligned text files, TSV, JSONL or a Hugging Face dataset), "
        "train a joint SentencePiece model on its training split and write memory-mapped token arrays.",
    )
    src = prep.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", type=Path, metavar="DIR", help="folder with {split}.{src} and {split}.{tgt} files")
    src.add_argument("--tsv", type=Path, metavar="DIR", help="folder with {split}.tsv files: source<TAB>target")
    src.add_argument("--jsonl", type=Path, metavar="DIR", help="folder with {split}.jsonl files, fields --src/--tgt (or translation.{src})")
    src.add_argument("--hf-dataset", metavar="NAME", help="a Hugging Face dataset name (hub) or a folder saved with save_to_disk")
    prep.add_argument("--hf-config", default=None, help="Hugging Face dataset configuration (e.g. de-en)")
    prep.add_argument("--src", required=True, help="source language / file suffix / column name")
    prep.add_argument("--tgt", required=True, help="target language / file suffix / column name")
    prep.add_argument("--out", type=Path, required=True, help="output folder for the prepared data")
    prep.add_argument("--splits", default=",".join(p.splits), help="comma-separated splits to read (default %(default)s)")
    prep.add_argument("--vocab-size", type=int, default=p.vocab_size, help="SentencePiece vocabulary size (default %(default)s)")
    prep.add_argument("--model-type", default=p.model_type, choices=["unigram", "bpe"], help="SentencePiece model type")
    prep.add_argument("--threads", type=int, default=p.num_threads, help="encoding threads (default %(default)s)")
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
    manifest = build_bible_corpus(args.out, cfg, cache_dir=args.cache)
    _print_bible_stats(manifest)
    if args.prepare is not None:
        from janusgen.data.prepare import prepare
        from janusgen.data.sources import TextFilesSource

        meta = prepare(
            TextFilesSource(args.out, cfg.source, cfg.target),
            args.prepare,
            PrepareConfig(vocab_size=args.vocab_size),
        )
        _print_prepare_stats(meta)
    return 0


def _run_data_prepare(args: argparse.Namespace) -> int:
    from janusgen.data.prepare import prepare
    from janusgen.data.sources import open_source

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    source = open_source(
        text=args.text, tsv=args.tsv, jsonl=args.jsonl, hf_dataset=args.hf_dataset,
        hf_config=args.hf_config, src=args.src, tgt=args.tgt,
    )
    cfg = PrepareConfig(vocab_size=args.vocab_size, model_type=args.model_type, num_threads=args.threads, splits=splits)
    meta = prepare(source, args.out, cfg)
    _print_prepare_stats(meta)
    return 0


def _print_bible_stats(manifest: dict) -> None:
    from janusgen.data.bible import format_report

    print(format_report(manifest))


def _print_prepare_stats(meta: dict) -> None:
    from janusgen.data.prepare import format_report

    print(format_report(meta))


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus",
        description="Train and run JANUS models: one encoder-decoder, autoregressive and non-autoregressive decoding.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{data}")
    _add_data(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except JanusError as e:
        print(f"janus: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("janus: interrupted", file=sys.stderr)
        return 130
