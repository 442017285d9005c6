"""Decoding speed of janusgen against Hugging Face `generate` and CTranslate2, on the SAME weights: a
random BART (built here, no download) converted with `janus convert` for janusgen and
exported with `janus export --format ctranslate2` for CTranslate2; Hugging Face runs the BART itself.

Every system writes exactly 32 tokens per sentence: the random BART's logits bias makes EOS (and pad,
<unk>, <s>, <mask>) all but impossible, so every search runs to its length limit (janusgen: 31 tokens and
the EOS it forces at the limit; Hugging Face: 31 and its forced EOS; CTranslate2: 32, `max_decoding_length`).
The weights are drawn with a large spread so that each step's best token wins by a wide margin: greedy
outputs are then token-identical across the float32 systems (the `agree` column: share of sentences
whose first 31 tokens equal janusgen float32's), and the timings compare the same work.

    python benchmarks/engine_speed.py                      # both sizes, every system installed
    python benchmarks/engine_speed.py --threads 1 --out benchmarks/results/engine_speed_<cpu>.json
    python benchmarks/engine_speed.py --quick              # a tiny model, a few sentences (CI smoke test)

Batch 1: milliseconds per token (one sentence at a time, `--sentences` of them); batch 32: tokens per
second (`--batches` batches of 32). Each cell is the median of `--rounds` x `--repeats` timings. Every
system runs in a fresh process of its own (one loaded beside another slows it: CTranslate2's OpenMP
threads slowed janusgen's greedy decoding 1.5x in a shared process), the systems taking turns by rounds;
in each, per setting, a warm-up and `--repeats` timings back to back (the steady state).
Ratios are of time against CTranslate2 float32 (2.0x: twice its time). A system that is not installed
(transformers, ctranslate2) or a janusgen precision this version lacks (`Translator.load(quantize=)`;
bf16 without native bf16 instructions) is skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from janusgen.config import DecodeConfig
from janusgen.decoding.translator import Translator

NEW_TOKENS = 32  # per sentence, every system
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # BART's ids 0-3; <mask> is the last id
BOS, PAD, EOS, UNK = range(4)


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    d_model: int
    layers: int  # encoder and decoder each
    heads: int
    ffn_dim: int
    vocab: int
    positions: int


SIZES = {
    "d256": Size("d256, 3+3", 256, 3, 4, 1024, 8192, 256),
    "base": Size("bart-base size", 768, 6, 12, 3072, 50265, 1024),
    "quick": Size("quick (d64, 2+2)", 64, 2, 4, 128, 1000, 128),
}
# (setting, beam, batch) per size, as the engine comparison's table has them
SETTINGS = {
    "d256": [("greedy", 1, 1), ("beam 4", 4, 1), ("greedy", 1, 32), ("beam 5", 5, 32)],
    "base": [("greedy", 1, 1), ("beam 4", 4, 1), ("greedy", 1, 32), ("beam 4", 4, 32)],
    "quick": [("greedy", 1, 1), ("beam 4", 4, 1), ("greedy", 1, 4), ("beam 4", 4, 4)],
}
SYSTEMS = (
    "janusgen fp32",
    "janusgen compiled",
    "janusgen int8",
    "janusgen bf16",
    "HF generate",
    "CTranslate2 fp32",
    "CTranslate2 int8",
)
BASELINE = "CTranslate2 fp32"


# ------------------------------------------------------------------------------------------- the model


def build_bart(size: Size, folder: Path, seed: int = 0) -> None:
    """A random BartForConditionalGeneration and a word-level tokenizer of its vocabulary, saved in
    `folder`. The decoder starts from <s> (janusgen's own layout); the logits bias rules out EOS and the
    other special tokens, so every search writes to its length limit. Beam outputs may still differ
    there: janusgen charges the forced EOS its log-prob (as fairseq does), Hugging Face's forced EOS is
    free and CTranslate2 stops without one, so hypotheses are ranked a little differently at the end."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = [*SPECIALS, *(f"w{i}" for i in range(len(SPECIALS), size.vocab - 1)), "<mask>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(folder / "tokenizer.json"))
    cfg = transformers.BartConfig(
        vocab_size=size.vocab,
        d_model=size.d_model,
        encoder_layers=size.layers,
        decoder_layers=size.layers,
        encoder_attention_heads=size.heads,
        decoder_attention_heads=size.heads,
        encoder_ffn_dim=size.ffn_dim,
        decoder_ffn_dim=size.ffn_dim,
        max_position_embeddings=size.positions,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
        init_std=0.1,  # wide: each step's best token wins by a margin rounding cannot flip
    )
    torch.manual_seed(seed)
    model = transformers.BartForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        # e^-30 against the best token: never chosen, yet finite (janusgen's forced EOS at the limit adds
        # its log-prob to every hypothesis: -1e4 would drown their differences in float32 rounding)
        model.final_logits_bias[0, [BOS, PAD, EOS, UNK, size.vocab - 1]] = -30.0
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=BOS,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        forced_eos_token_id=EOS,
    )
    model.save_pretrained(str(folder))


def sources(size: Size, count: int, seed: int) -> list[list[int]]:
    """`count` random sources of 10 to 30 ordinary tokens (ids, no special tokens)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(len(SPECIALS), size.vocab - 1, rng.integers(10, 31)).tolist() for _ in range(count)]


# ------------------------------------------------------------------------------------------- the systems

Run = Callable[[list[list[int]], int], list[list[int]]]  # (sources, beam) -> outputs (ids)


def janusgen_system(checkpoint: Path, compile: bool = False, **load: Any) -> Run:
    translator = Translator.load(checkpoint, device="cpu", **load)
    options = {"compile": True} if compile else {}  # DecodeConfig.compile (older versions lack it)

    def run(batch: list[list[int]], beam: int) -> list[list[int]]:
        # 31 tokens, then the forced EOS: 32 decoder steps, as the others take
        cfg = DecodeConfig(
            mode="ar", beam=beam, max_len_a=0.0, max_len_b=NEW_TOKENS - 1, max_tokens=1 << 20, **options
        )
        out = translator.decode_ids([np.asarray(s, dtype=np.int64) for s in batch], cfg)
        return [tokens + [EOS] for tokens, _ in out]

    return run


def hf_system(folder: Path) -> Run:
    import transformers

    model = transformers.BartForConditionalGeneration.from_pretrained(str(folder)).float().eval()

    def run(batch: list[list[int]], beam: int) -> list[list[int]]:
        rows = [[BOS, *s, EOS] for s in batch]  # BART reads <s> x </s>
        width = max(map(len, rows))
        ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=ids != PAD,
                num_beams=beam,
                **({"early_stopping": True, "length_penalty": 1.0} if beam > 1 else {}),
                do_sample=False,
                max_new_tokens=NEW_TOKENS,  # 31 tokens and the forced EOS
            )
        return [row[1:] for row in out.tolist()]  # after the start token

    return run


def ctranslate2_system(folder: Path, compute_type: str, threads: int) -> Run:
    import ctranslate2

    translator = ctranslate2.Translator(
        str(folder), device="cpu", compute_type=compute_type, intra_threads=threads, inter_threads=1
    )
    vocab = json.loads((folder / "shared_vocabulary.json").read_text())
    index = {piece: i for i, piece in enumerate(vocab)}

    def run(batch: list[list[int]], beam: int) -> list[list[int]]:
        tokens = [["<s>", *(vocab[i] for i in s), "</s>"] for s in batch]
        results = translator.translate_batch(
            tokens, beam_size=beam, length_penalty=1.0, max_decoding_length=NEW_TOKENS, max_batch_size=0
        )
        return [[index[p] for p in r.hypotheses[0]] for r in results]

    return run


def build_models(work: Path, size: Size) -> tuple[list[str], dict[str, str]]:
    """Write the random BART, its janusgen checkpoint and its CTranslate2 export into `work`; the systems
    that can run here, and why each other one cannot."""
    from janusgen.checkpoint import save_checkpoint
    from janusgen.model.bart import convert

    hf_dir, checkpoint = work / "bart", work / "janus"
    hf_dir.mkdir()
    build_bart(size, hf_dir)
    save_checkpoint(checkpoint, *convert(str(hf_dir)))
    names, skipped = ["janusgen fp32"], {}
    if "compile" in {f.name for f in dataclasses.fields(DecodeConfig)}:
        names.append("janusgen compiled")
    else:
        skipped["janusgen compiled"] = "this janusgen has no DecodeConfig.compile"
    if "quantize" in inspect.signature(Translator.load).parameters:
        names.append("janusgen int8")
    else:
        skipped["janusgen int8"] = "this janusgen has no Translator.load(quantize=)"
    from janusgen.hardware import detect_hardware

    if detect_hardware("cpu").cpu_bf16_native:
        names.append("janusgen bf16")
    else:
        skipped["janusgen bf16"] = "no native bf16 on this CPU (oneDNN would emulate it)"
    names.append("HF generate")
    if importlib.util.find_spec("ctranslate2") is None:
        skipped[BASELINE] = skipped["CTranslate2 int8"] = "ctranslate2 is not installed"
    else:
        from janusgen.export import export

        export(checkpoint, work / "ct2", "ctranslate2")
        names += [BASELINE, "CTranslate2 int8"]
    return names, skipped


def load_system(name: str, work: Path, threads: int) -> Run:
    loaders: dict[str, Callable[[], Run]] = {
        "janusgen fp32": lambda: janusgen_system(work / "janus"),
        "janusgen compiled": lambda: janusgen_system(work / "janus", compile=True),
        "janusgen int8": lambda: janusgen_system(work / "janus", quantize="int8"),
        "janusgen bf16": lambda: janusgen_system(work / "janus", dtype="bfloat16"),
        "HF generate": lambda: hf_system(work / "bart"),
        BASELINE: lambda: ctranslate2_system(work / "ct2", "float32", threads),
        "CTranslate2 int8": lambda: ctranslate2_system(work / "ct2", "int8", threads),
    }
    return loaders[name]()


# ------------------------------------------------------------------------------------------- timing


def settings_data(key: str, args: argparse.Namespace) -> list[tuple[str, int, int, list[list[list[int]]]]]:
    """(setting, beam, batch, the batches of source ids) of every setting of a size."""
    out = []
    for setting, beam, batch in SETTINGS[key]:
        count = args.sentences if batch == 1 else args.batches * batch
        data = sources(SIZES[key], count, seed=batch)
        out.append((setting, beam, batch, [data[i : i + batch] for i in range(0, count, batch)]))
    return out


def worker(name: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    """One system in a process of its own: per setting, a warm-up pass over the first batch, then
    `--repeats` timed passes back to back (its steady state); the times and the last outputs."""
    run = load_system(name, args.work, args.threads)
    results = []
    for _, beam, _, batches in settings_data(key, args):
        run(batches[0], beam)
        times, outputs = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            outputs = [out for b in batches for out in run(b, beam)]
            times.append(time.perf_counter() - start)
        results.append({"times": times, "outputs": outputs})
    return {"settings": results}


def timed(
    names: list[str], key: str, args: argparse.Namespace, work: Path
) -> dict[str, list[dict[str, Any]]]:
    """Per system, per setting: every time measured and the outputs. Each system runs in a fresh process
    (a runtime one system loads, CTranslate2's OpenMP threads above all, slowed the next one sharing
    its process by up to 1.5x), and the systems take turns by `--rounds`, so that the machine's drifts
    hit them alike."""
    collected: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for name in names:
            argv = [sys.executable, __file__, "--worker", name, "--work", str(work), "--sizes", key]
            argv += ["--threads", str(args.threads), "--sentences", str(args.sentences)]
            argv += ["--batches", str(args.batches), "--repeats", str(args.repeats)]
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            got = json.loads(proc.stdout.splitlines()[-1])["settings"]
            if name not in collected:
                collected[name] = got
            else:
                for mine, new in zip(collected[name], got, strict=True):
                    mine["times"] += new["times"]
    return collected


def agreement(reference: list[list[int]], outputs: list[list[int]]) -> float:
    """Share of sentences whose first 31 tokens equal the reference's (the 32nd is EOS for some)."""
    n = NEW_TOKENS - 1
    return sum(a[:n] == b[:n] for a, b in zip(reference, outputs, strict=True)) / len(reference)


def bench_size(key: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = SIZES[key]
    print(f"== {size.name}: building the model and every system", flush=True)
    names, skipped = build_models(work, size)
    if args.systems:
        skipped.update({n: "not in --systems" for n in names if n not in args.systems})
        names = [n for n in names if n in args.systems]
    measured = timed(names, key, args, work)
    rows = []
    for index, (setting, beam, batch, batches) in enumerate(settings_data(key, args)):
        count = sum(len(b) for b in batches)
        row: dict[str, Any] = {"setting": setting, "beam": beam, "batch": batch, "sentences": count}
        row["systems"] = {}
        reference = None
        for name in names:
            seconds, outputs = (
                statistics.median(measured[name][index]["times"]),
                measured[name][index]["outputs"],
            )
            lengths = {len(o) for o in outputs}
            if lengths != {NEW_TOKENS}:
                raise SystemExit(f"{name} wrote {sorted(lengths)} tokens per sentence, not {NEW_TOKENS}")
            reference = outputs if reference is None else reference
            tokens = count * NEW_TOKENS
            row["systems"][name] = {
                "seconds": seconds,
                "ms_per_token": 1e3 * seconds / tokens,
                "tokens_per_s": tokens / seconds,
                "agree": agreement(reference, outputs),
            }
            print(
                f"   {setting:7} batch {batch:2}  {name:17} {1e3 * seconds / tokens:8.2f} ms/token  "
                f"{tokens / seconds:9.0f} tok/s  agree {row['systems'][name]['agree']:.2f}",
                flush=True,
            )
        rows.append(row)
    return {"size": dataclasses.asdict(size), "rows": rows, "skipped": skipped}


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table: batch 1 in ms per token, batch 32 in tokens per second, each with its time
    ratio against CTranslate2 fp32."""
    present = [s for s in SYSTEMS if any(s in r["systems"] for res in results for r in res["rows"])]
    lines = [
        "| model | setting | batch | " + " | ".join(present) + " |",
        "|---|---|---:|" + "---:|" * len(present),
    ]
    for res in results:
        for r in res["rows"]:
            base = r["systems"].get(BASELINE)
            cells = []
            for name in present:
                m = r["systems"].get(name)
                if m is None:
                    cells.append("-")
                    continue
                value = (
                    f"{m['ms_per_token']:.2f} ms" if r["batch"] == 1 else f"{m['tokens_per_s']:,.0f} tok/s"
                )
                ratio = f" ({m['seconds'] / base['seconds']:.2f}x)" if base and name != BASELINE else ""
                agree = "" if m["agree"] == 1.0 else f" [agree {m['agree']:.2f}]"
                cells.append(value + ratio + agree)
            lines.append(
                f"| {res['size']['name']} | {r['setting']} | {r['batch']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def machine(threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "ctranslate2"):
        if importlib.util.find_spec(name) is not None:
            versions[name] = __import__(name).__version__
    # the instruction sets a run was limited to (an AVX2-only CPU emulated on a newer one)
    isa = {k: v for k, v in os.environ.items() if k in ISA_VARIABLES}
    return {
        "cpu": cpu,
        "isa_limits": isa,
        "threads": threads,
        "versions": versions,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", *sys.argv]),
    }


ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "CT2_FORCE_CPU_ISA")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=["d256", "base"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="for every system")
    parser.add_argument("--sentences", type=int, default=16, help="timed at batch 1")
    parser.add_argument("--batches", type=int, default=2, help="batches of 32 timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per round")
    parser.add_argument("--rounds", type=int, default=2, help="turns each system takes (default %(default)s)")
    parser.add_argument(
        "--systems", nargs="+", help="only these (names as in the table), e.g. 'janusgen fp32'"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny model and a few sentences (CI)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one system, in a process of its own
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker, args.sizes[0], args)))
        return 0
    if importlib.util.find_spec("transformers") is None:
        raise SystemExit(
            "engine_speed needs transformers (pip install 'janusgen[export]'): it builds the BART"
        )
    if args.quick:
        args.sizes, args.sentences, args.batches, args.repeats, args.rounds = ["quick"], 2, 1, 1, 1
    torch.set_num_threads(args.threads)
    results = []
    for key in args.sizes:
        with tempfile.TemporaryDirectory(prefix="engine-speed-") as work:
            results.append(bench_size(key, args, Path(work)))
    report = {"machine": machine(args.threads), "new_tokens": NEW_TOKENS, "results": results}
    print()
    print(table(results))
    for name, why in sorted({(n, w) for res in results for n, w in res["skipped"].items()}):
        print(f"skipped {name}: {why}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
