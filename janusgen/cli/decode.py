"""`janus generate`, `janus evaluate` and `janus serve`: a checkpoint decodes; the decoding flags are
DecodeConfig's fields and the service's are ServeConfig's (janusgen.cli.options)."""

from __future__ import annotations

import argparse
from pathlib import Path

from janusgen.cli.options import add_options, option_values
from janusgen.config import QUANTIZATIONS, DecodeConfig


def _add_model_options(parser: argparse.ArgumentParser, dtype_help: str) -> None:
    """The checkpoint and how it is loaded: `Translator.load`'s arguments."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint folder (e.g. RUN/best) or Hugging Face Hub repo id (owner/name; the hub extra)",
    )
    parser.add_argument("--revision", default=None, help="of a Hub repo id: a branch, tag or commit")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when there is one), cpu, cuda or cuda:N (default %(default)s)",
    )
    parser.add_argument("--dtype", default="auto", help=dtype_help)
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="int8: int8 weights for every Linear layer (PyTorch's dynamic quantization; CPU, float32 "
        "activations): faster on a CPU, BLEU in BENCHMARKS.md (default %(default)s)",
    )


def add_decode_options(parser: argparse.ArgumentParser) -> None:
    _add_model_options(
        parser,
        "auto, float32, bfloat16 or float16; auto: the rule of --precision auto of `janus train` "
        "(default %(default)s)",
    )
    add_options(parser, DecodeConfig, DecodeConfig())


def _checkpoint(args: argparse.Namespace) -> Path:
    """--checkpoint as a local folder: a Hub repo id is downloaded into (or, offline, found in) the cache."""
    from janusgen.hub import resolve_checkpoint

    return resolve_checkpoint(args.checkpoint, args.revision)


def decode_config(args: argparse.Namespace) -> DecodeConfig:
    return DecodeConfig(**option_values(args, DecodeConfig))  # checks every value


def add_commands(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate",
        help="translate text with a checkpoint, in AR or NAR mode",
        description="Read one input per line (stdin or --input) and write one output per line "
        "(stdout or --output), in order, as batches finish.",
    )
    add_decode_options(gen)
    gen.add_argument("--input", type=Path, default=None, help="input text file (default: stdin)")
    gen.add_argument("--output", type=Path, default=None, help="output file (default: stdout)")
    gen.add_argument("--scores", action="store_true", help="write 'score<TAB>text' instead of text")
    gen.add_argument(
        "--buffer-lines", type=int, default=512, help="lines read per batch group (default %(default)s)"
    )
    gen.set_defaults(func=_run_generate)

    ev = sub.add_parser(
        "evaluate",
        help="BLEU, chrF and speed of a checkpoint on a prepared split",
        description="Translate a split of a prepared data folder and score it with sacreBLEU "
        "(BLEU and chrF, with signatures) against its references; report sentences/s and "
        "target tokens/s.",
    )
    add_decode_options(ev)
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

    from janusgen.serving.config import ServeConfig

    srv = sub.add_parser(
        "serve",
        help="an HTTP JSON translation service with micro-batching (pip install janusgen[serve])",
        description="Load a checkpoint once and serve POST /translate, GET /health and GET /metrics "
        "(Prometheus text). Concurrent requests with the same settings are gathered for up to "
        "--max-wait-ms into one token-budgeted batch. A request may set the decoding options of "
        "`janus generate`, spelt as JSON fields (length_beam for --length-beam).",
    )
    _add_model_options(srv, "auto, float32, bfloat16 or float16 (default auto)")
    add_options(srv, ServeConfig, ServeConfig())
    srv.set_defaults(func=_run_serve)


def _run_generate(args: argparse.Namespace) -> int:
    from janusgen.decoding.textio import check_files, generate_file
    from janusgen.decoding.translator import Translator

    cfg = decode_config(args)
    check_files(args.input, args.output, args.buffer_lines)
    translator = Translator.load(_checkpoint(args), args.device, args.dtype, args.quantize)
    generate_file(translator, cfg, args.input, args.output, args.scores, args.buffer_lines)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from janusgen.evaluation.evaluate import evaluate_split, format_table

    cfg = decode_config(args)  # a bad option is named before anything is downloaded or loaded
    result = evaluate_split(
        _checkpoint(args),
        args.data,
        args.split,
        cfg,
        limit=args.limit,
        metric=args.metric,
        device=args.device,
        dtype=args.dtype,
        quantize=args.quantize,
        json_path=args.json,
        hypotheses_path=args.hypotheses,
    )
    print(format_table([result]))
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from janusgen.serving.config import ServeConfig

    cfg = ServeConfig(**option_values(args, ServeConfig))  # checks every value
    try:
        from janusgen.serving.server import run_server
    except ImportError as e:
        from janusgen.errors import JanusError

        raise JanusError(
            f"janus serve needs its extra: pip install 'janusgen[serve]' ({e.name} is missing)"
        ) from e
    from janusgen.decoding.translator import Translator

    run_server(Translator.load(_checkpoint(args), args.device, args.dtype, args.quantize), cfg)
    return 0
