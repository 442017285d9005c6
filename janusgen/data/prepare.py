"""`janus data prepare`: train the joint vocabulary on a corpus and write memory-mapped token arrays.

The output folder holds the tokenizer (`spm.model`, or with --tokenizer a pre-trained `tokenizer.json`),
`{split}.src.bin/.idx` and `{split}.tgt.bin/.idx` per split
(see `binarized`), the kept pairs' text of every split but train in `{split}.src.txt` / `{split}.tgt.txt`
(the exact sources and references that evaluation uses), and `meta.json` (statistics, the source,
the config and a sha256 of every file).
It is built in a temporary folder and renamed into place only when complete, and two runs on the
same input with the same config write byte-identical files.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from janusgen.config import PrepareConfig, to_dict
from janusgen.data.binarized import (
    DATA_FORMAT_VERSION,
    META_FILE,
    TRAIN,
    BinarizedWriter,
    dtype_for_vocab,
    text_file,
)
from janusgen.data.sources import PairSource
from janusgen.data.tokenizer import Tokenizer
from janusgen.data.tokenizer_base import TextTokenizer
from janusgen.errors import DataError, JanusError
from janusgen.fileio import atomic_directory, read_json, sha256_file, write_json
from janusgen.progress import quiet


def prepare(source: PairSource, out_dir: Path, cfg: PrepareConfig, overwrite: bool = False) -> dict[str, Any]:
    """Prepare `source` into `out_dir` and return its meta.json contents.

    An existing prepared folder is replaced only with `overwrite`, and only while it holds nothing but
    what `prepare` wrote there (see `check_output`). The returned dict also has a "run" entry (output
    folder, seconds taken) that is not written to meta.json, so reruns stay byte-identical.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    splits = tuple(dict.fromkeys(cfg.splits))
    if "train" not in splits:
        listed = ",".join(splits)
        raise JanusError(f"--splits must include train (the vocabulary is learnt from it), got {listed}")
    # Every split must be there before minutes are spent on the vocabulary.
    source.require_splits(splits)
    check_output(out_dir, overwrite)

    pretrained = None
    if cfg.tokenizer is not None:  # load it before anything is written: a bad name fails at once
        from janusgen.data.hf_tokenizer import HFTokenizer

        pretrained = HFTokenizer.from_pretrained(cfg.tokenizer)
    with atomic_directory(out_dir) as tmp:
        tokenizer: TextTokenizer = pretrained or Tokenizer.train(
            _train_sentences(source),
            vocab_size=cfg.vocab_size,
            model_type=cfg.model_type,
            character_coverage=cfg.character_coverage,
            max_sentences=cfg.spm_max_sentences,
            seed=cfg.seed,
            num_threads=cfg.spm_threads,
        )
        tokenizer.save(tmp / tokenizer.file_name)
        dtype = dtype_for_vocab(tokenizer.vocab_size)
        stats = {split: _binarize(source, split, tokenizer, tmp, dtype, cfg) for split in splits}
        meta = {
            "format_version": DATA_FORMAT_VERSION,
            "src": source.src,
            "tgt": source.tgt,
            "vocab_size": tokenizer.vocab_size,
            "dtype": dtype,
            "special_ids": {n: getattr(tokenizer, f"{n}_id") for n in ("pad", "unk", "bos", "eos", "mask")},
            "tokenizer": tokenizer.file_name,
            "splits": stats,
            "source": source.describe(),
            "config": {**to_dict(cfg), "splits": list(splits)},  # a list, as JSON reads it back
            "files": {path.name: sha256_file(path) for path in sorted(tmp.iterdir())},
        }
        write_json(tmp / META_FILE, meta)
        check_output(out_dir, overwrite)  # again: the user may have put files there while this ran
    return {**meta, "run": {"out": str(out_dir), "seconds": round(time.perf_counter() - start, 2)}}


def check_output(out_dir: Path, overwrite: bool = False) -> None:
    """Refuse an output folder whose replacement could lose anything.

    A missing or empty folder is fine. A prepared folder (with meta.json) is replaced only with
    `overwrite`, and only when every entry in it is a file this `prepare` wrote (meta.json and the
    files its "files" list names): replacing the folder deletes all it holds, so a file or folder the
    user added there (notes, a model, a corpus) makes it refuse even with `overwrite`, naming them. Any
    other non-empty folder (a typo, the corpus itself) is always refused.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise JanusError(f"output {out_dir} exists and is not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not (out_dir / META_FILE).is_file():
        raise JanusError(
            f"output folder {out_dir} is not empty and is not a prepared data folder (no {META_FILE}); "
            "refusing to replace it"
        )
    if not overwrite:
        raise JanusError(
            f"output folder {out_dir} already holds prepared data; pass --overwrite to replace it, "
            "or choose another --out"
        )
    meta = read_json(out_dir / META_FILE)
    written = meta.get("files") if isinstance(meta, dict) else None
    ours = {META_FILE, *(written if isinstance(written, dict) else ())}
    foreign = sorted(
        entry.name + ("/" if entry.is_dir() else "")
        for entry in out_dir.iterdir()
        if entry.name not in ours or entry.is_symlink() or not entry.is_file()
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        entries, it = ("entry", "it") if len(foreign) == 1 else ("entries", "them")
        raise JanusError(
            f"output folder {out_dir} holds {len(foreign)} {entries} that `janus data prepare` did not "
            f"write ({shown}); --overwrite would delete {it}: move {it} out of the folder first, or choose "
            "another --out"
        )


def _train_sentences(source: PairSource) -> Iterator[str]:
    """Both sides of the train split's kept pairs, for SentencePiece."""
    kept = 0
    with tqdm(
        desc="read train for the vocabulary", unit=" pairs", file=sys.stderr, disable=quiet() or None
    ) as bar:
        for src, tgt in source.pairs("train"):
            bar.update()
            if src and tgt:
                kept += 1
                yield src
                yield tgt
    if not kept:
        raise DataError("the train split has no pair with both sides non-empty")


def _binarize(
    source: PairSource, split: str, tokenizer: TextTokenizer, folder: Path, dtype: str, cfg: PrepareConfig
) -> dict[str, Any]:
    """Encode `split` chunk by chunk into `{split}.src` / `{split}.tgt` arrays; return its statistics."""
    dropped = 0
    pairs = source.pairs(split)
    keep_text = split != TRAIN  # evaluation needs the raw text; train is the one split never evaluated
    with (
        BinarizedWriter(folder / f"{split}.src", dtype) as src_out,
        BinarizedWriter(folder / f"{split}.tgt", dtype) as tgt_out,
        contextlib.ExitStack() as text_files,
        tqdm(desc=f"encode {split}", unit=" pairs", file=sys.stderr, disable=quiet() or None) as bar,
    ):
        if keep_text:
            src_txt, tgt_txt = (
                text_files.enter_context(open(folder / text_file(split, side), "w", encoding="utf-8"))
                for side in ("src", "tgt")
            )
        while chunk := list(islice(pairs, cfg.chunk_lines)):
            src_ids = tokenizer.encode([s for s, _ in chunk], num_threads=cfg.num_threads)
            tgt_ids = tokenizer.encode([t for _, t in chunk], num_threads=cfg.num_threads)
            # One rule drops an empty side and text that normalises to nothing: no tokens, no pair.
            kept = [(s, t, k) for s, t, k in zip(src_ids, tgt_ids, chunk, strict=True) if s and t]
            dropped += len(chunk) - len(kept)
            src_out.append([s for s, _, _ in kept])
            tgt_out.append([t for _, t, _ in kept])
            if keep_text:
                src_txt.writelines(f"{text[0]}\n" for _, _, text in kept)
                tgt_txt.writelines(f"{text[1]}\n" for _, _, text in kept)
            bar.update(len(chunk))
        src_len = src_out.finish()
        tgt_len = tgt_out.finish()
    return {
        "pairs": len(src_len),
        "dropped_empty": dropped,
        **_side_stats("src", src_len),
        **_side_stats("tgt", tgt_len),
    }


def _side_stats(side: str, lengths: np.ndarray) -> dict[str, Any]:
    return {
        f"{side}_tokens": int(lengths.sum()),
        f"{side}_mean_tokens": round(float(lengths.mean()), 3) if len(lengths) else 0.0,
        f"{side}_max_tokens": int(lengths.max(initial=0)),
    }


def format_prepare_report(meta: dict[str, Any]) -> str:
    """A short table of what `prepare` wrote: per split pairs, mean and max tokens, dropped pairs."""
    run = meta.get("run", {})
    where = f" into {run['out']}" if "out" in run else ""
    took = f" in {run['seconds']:.1f} s" if "seconds" in run else ""
    header = ("split", "pairs", "src mean", "tgt mean", "src max", "tgt max", "dropped")
    lines = [
        f"prepared {meta['src']}->{meta['tgt']}{where}{took}",
        f"vocabulary {meta['vocab_size']} pieces ({meta['dtype']}), in {meta['tokenizer']}",
        "{:<10}{:>12}{:>10}{:>10}{:>9}{:>9}{:>9}".format(*header),
    ]
    for name in meta["config"]["splits"]:
        s = meta["splits"][name]
        lines.append(
            f"{name:<10}{s['pairs']:>12,}{s['src_mean_tokens']:>10.1f}{s['tgt_mean_tokens']:>10.1f}"
            f"{s['src_max_tokens']:>9}{s['tgt_max_tokens']:>9}{s['dropped_empty']:>9,}"
        )
    return "\n".join(lines)
