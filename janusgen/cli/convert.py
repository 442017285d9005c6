"""`janus convert` (a Hugging Face BART into a checkpoint), `janus export` (a checkpoint's AR view out
to Hugging Face or CTranslate2) and `janus push` (a checkpoint to the Hugging Face Hub)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from janusgen.errors import JanusError


def add_commands(sub: argparse._SubParsersAction) -> None:
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

    push = sub.add_parser(
        "push",
        help="upload a checkpoint folder to the Hugging Face Hub",
        description="Verify a checkpoint folder and upload its weights, config, tokenizer, checksums and "
        "model card (not the trainer state) to a Hub model repo, created if needed, in one commit (needs the "
        "hub extra and a login: `hf auth login` or HF_TOKEN). Load it back with `--checkpoint OWNER/NAME`.",
    )
    push.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (e.g. RUN/best)")
    push.add_argument("--repo-id", required=True, metavar="OWNER/NAME", help="the Hub model repo")
    push.add_argument("--private", action="store_true", help="make a new repo private")
    push.set_defaults(func=_run_push)

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


def _run_convert(args: argparse.Namespace) -> int:
    from janusgen.checkpoint import save_checkpoint
    from janusgen.model.bart import convert

    if args.out.exists():
        raise JanusError(f"--out {args.out} already exists; choose another folder")
    model, tokenizer, config = convert(args.hf, args.max_target_length)
    save_checkpoint(args.out, model, tokenizer, config)
    summary = {"out": str(args.out), "parameters": model.num_parameters(), "vocab_size": model.cfg.vocab_size}
    print(json.dumps(summary))
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from janusgen.export import export

    print(json.dumps(export(args.checkpoint, args.out, args.format)))
    return 0


def _run_push(args: argparse.Namespace) -> int:
    from janusgen.hub import push_to_hub

    print(push_to_hub(args.checkpoint, args.repo_id, private=args.private))
    return 0
