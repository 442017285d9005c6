"""`janus distill`: sequence-level knowledge distillation (Kim and Rush, 2016) into a new prepared dataset.

A teacher checkpoint's AR view beam-translates the training split of a prepared dataset; the output
folder is a prepared dataset like any other (same vocabulary, the teacher's outputs as `train.tgt`, the
validation and test splits copied unchanged, so evaluation stays against the human references) that
also keeps the original training references as `train.ref.tgt`, for `--ar-targets references`
(NAR/AUX on the teacher's outputs, AR on the references).

The work is split into shards of pairs taken in order of source length; each finished shard is written
atomically to `{out}.partial/`, so a killed run resumes at the first missing shard. The result is built
in a temporary folder and renamed into place, and two runs with the same teacher, data and options on
the same machine write byte-identical files (decoding is deterministic; the shards do not depend on
where a run was resumed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from janusgen.checkpoint import CONFIG_FILE, MODEL_FILE, read_config
from janusgen.config import DistillConfig
from janusgen.data.binarized import META_FILE, TRAIN, BinarizedArray, BinarizedWriter, bin_path, idx_path
from janusgen.data.dataset import PairDataset, read_meta
from janusgen.data.prepare import check_output
from janusgen.data.tokenizer_base import tokenizer_file
from janusgen.decoding.translator import Translator
from janusgen.errors import JanusError
from janusgen.fileio import atomic_directory, read_json, sha256_file, write_json, writing
from janusgen.progress import quiet

log = logging.getLogger(__name__)

REFERENCES = "train.ref.tgt"  # the original training targets, kept beside the teacher's
PLAN_FILE = "plan.json"
_ASSEMBLE_CHUNK = 65536  # pairs written per chunk: bounds the memory of assembling a large corpus


def partial_dir(out: Path) -> Path:
    """Where the finished shards of a distillation into `out` wait until the last one is done."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def distill(
    checkpoint: Path, data: Path, out: Path, cfg: DistillConfig, device: str = "cpu", overwrite: bool = False
) -> dict[str, Any]:
    """Translate `data`'s training split with `checkpoint`'s AR view into the prepared folder `out`;
    returns its meta.json contents."""
    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    train = PairDataset.open(data, TRAIN)
    train.verify()
    _check_teacher(checkpoint, train)
    check_output(out, overwrite)
    translator = Translator.load(checkpoint, device=device, dtype=cfg.dtype)
    plan = {
        "teacher": str(checkpoint.resolve()),
        "teacher_sha256": sha256_file(checkpoint / MODEL_FILE),
        "data": str(data.resolve()),
        "train_sha256": _train_checksums(train),
        "options": asdict(cfg),
        "dtype": str(next(translator.model.parameters()).dtype).removeprefix("torch."),
    }
    work = partial_dir(out)
    _start_or_resume(work, plan)

    order = np.argsort(train.src_lengths, kind="stable")  # similar lengths share a shard (little padding)
    shards = [order[s : s + cfg.shard_pairs] for s in range(0, len(order), cfg.shard_pairs)]
    limit = translator.model.cfg.max_positions - 1
    with tqdm(
        total=len(order), desc="distill", unit=" pairs", file=sys.stderr, disable=quiet() or None
    ) as bar:
        for number, indices in enumerate(shards):
            prefix = work / f"shard_{number:05d}"
            if not _shard_done(prefix, len(indices), train.meta["dtype"]):
                flat, lengths = train.src.gather(indices)
                sources = np.split(flat.astype(np.int64), np.cumsum(lengths)[:-1])
                decoded = translator.decode_ids([s[:limit] for s in sources], cfg.decode)
                _write_shard(prefix, [tokens for tokens, _ in decoded], train.meta["dtype"])
            bar.update(len(indices))

    with atomic_directory(out) as tmp:
        meta = _assemble(train, work, shards, order, tmp, plan)
        check_output(out, overwrite)  # again: files may have appeared there while this ran
    shutil.rmtree(work)
    return meta


def _check_teacher(checkpoint: Path, train: PairDataset) -> None:
    """The teacher must have an AR view and the data's vocabulary (the output shares it)."""
    if not (checkpoint / CONFIG_FILE).is_file():
        raise JanusError(f"--checkpoint {checkpoint}: not a checkpoint folder (no {CONFIG_FILE})")
    objective = read_config(checkpoint).get("objective", {})
    if objective.get("ar_weight", 1.0) <= 0:
        raise JanusError(
            f"--checkpoint {checkpoint}: its objective ({objective.get('name')}) trains no AR view, which "
            "distillation decodes with; use an ar or janus checkpoint"
        )
    data_tokenizer = train.data_dir / train.meta["tokenizer"]
    if sha256_file(tokenizer_file(checkpoint)) != sha256_file(data_tokenizer):
        raise JanusError(
            f"--checkpoint {checkpoint} has another vocabulary than {data_tokenizer}: the distilled data "
            "must share the data's vocabulary; distil with a model trained on this data folder"
        )


def _train_checksums(train: PairDataset) -> dict[str, str]:
    """sha256 of the train split's token files: those meta.json records, which `verify` has just checked
    the files against (read again only for a file it does not record)."""
    recorded = train.meta.get("files") or {}
    paths = [p for array in (train.src, train.tgt) for p in (bin_path(array.prefix), idx_path(array.prefix))]
    return {p.name: recorded.get(p.name) or sha256_file(p) for p in paths}


def _start_or_resume(work: Path, plan: dict[str, Any]) -> None:
    """Reuse the shards in `work` only if they were made by the same teacher, data and options."""
    plan_file = work / PLAN_FILE
    if plan_file.is_file():
        if read_json(plan_file) == plan:
            log.info(f"janus: resuming the distillation in {work}")
            return
        raise JanusError(
            f"{work} holds a distillation with another teacher, data or options ({plan_file}); "
            "delete that folder to start afresh, or run with the same --checkpoint, --data and options"
        )
    if work.exists():
        raise JanusError(
            f"{work} exists but is not a distillation in progress (no {PLAN_FILE}); move it away"
        )
    with writing(work):
        work.mkdir(parents=True)
        write_json(plan_file, plan)


def _shard_done(prefix: Path, pairs: int, dtype: str) -> bool:
    try:
        return len(BinarizedArray(prefix, dtype)) == pairs
    except (OSError, JanusError):
        return False


def _write_shard(prefix: Path, outputs: list[list[int]], dtype: str) -> None:
    """The shard's outputs as a binarized array, its .idx renamed into place last: a shard with an
    .idx is complete."""
    tmp = prefix.with_name(prefix.name + ".tmp")
    with _removed_on_error(bin_path(tmp), idx_path(tmp)):
        with BinarizedWriter(tmp, dtype) as writer:
            writer.append(outputs)
            writer.finish()
        os.replace(bin_path(tmp), bin_path(prefix))
        os.replace(idx_path(tmp), idx_path(prefix))


@contextlib.contextmanager
def _removed_on_error(*paths: Path) -> Iterator[None]:
    """Remove `paths` if the code inside fails (nothing half-written stays in the work folder), and name
    the file in the error of a full disk."""
    try:
        with writing(paths[0]):
            yield
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise


def _assemble(
    train: PairDataset,
    work: Path,
    shards: list[np.ndarray],
    order: np.ndarray,
    folder: Path,
    plan: dict[str, Any],
) -> dict[str, Any]:
    """The distilled prepared dataset in `folder`: every file of the original but train.tgt copied, the
    teacher's outputs as train.tgt (in the original pair order), the original targets as train.ref.tgt."""
    data, meta = train.data_dir, read_meta(train.data_dir)
    dtype = meta["dtype"]
    for name in meta["files"]:
        if not name.startswith(f"{TRAIN}.tgt."):
            shutil.copyfile(data / name, folder / name)
    for suffix in (".bin", ".idx"):
        shutil.copyfile(data / f"{TRAIN}.tgt{suffix}", folder / f"{REFERENCES}{suffix}")

    targets, rows, kept_references = _targets_in_one_array(work, len(shards), order, train)
    with BinarizedWriter(folder / f"{TRAIN}.tgt", dtype) as writer:
        for start in range(0, len(order), _ASSEMBLE_CHUNK):
            writer.append_flat(*targets.gather(rows[start : start + _ASSEMBLE_CHUNK]))
        lengths = writer.finish()

    stats = dict(meta["splits"][TRAIN])
    stats.update(
        tgt_tokens=int(lengths.sum()),
        tgt_mean_tokens=round(float(lengths.mean()), 3) if len(lengths) else 0.0,
        tgt_max_tokens=int(lengths.max(initial=0)),
    )
    meta["splits"] = {**meta["splits"], TRAIN: stats}
    meta["distillation"] = {
        **{k: plan[k] for k in ("teacher", "teacher_sha256", "options", "dtype")},
        "original_data": plan["data"],
        "references": REFERENCES,
        "empty_outputs_kept_as_reference": kept_references,
        "original_tgt_mean_tokens": round(float(train.tgt_lengths.mean()), 3) if len(train) else 0.0,
    }
    meta["files"] = {path.name: sha256_file(path) for path in sorted(folder.iterdir())}
    write_json(folder / META_FILE, meta)
    return meta


def _targets_in_one_array(
    work: Path, count: int, order: np.ndarray, train: PairDataset
) -> tuple[BinarizedArray, np.ndarray, int]:
    """Every pair's new target in one binarized array in `work`: the shards' outputs back to back in
    shard order, then the reference of each pair whose output is empty (the teacher stopped at once,
    which would leave a pair without a target). Returns the array, pair i's row in it, and how many
    pairs kept their reference."""
    dtype = train.meta["dtype"]
    prefix = work / "targets"
    with _removed_on_error(bin_path(prefix), idx_path(prefix)), BinarizedWriter(prefix, dtype) as writer:
        output_lengths = []
        for number in range(count):
            shard = BinarizedArray(work / f"shard_{number:05d}", dtype)
            writer.append_flat(*shard.gather(np.arange(len(shard))))
            output_lengths.append(shard.lengths)
        rows = np.empty(len(order), dtype=np.int64)
        rows[order] = np.arange(len(order))  # the shards are `order` cut in pieces
        empty = np.flatnonzero(np.concatenate(output_lengths)[rows] == 0) if count else rows[:0]
        writer.append_flat(*train.tgt.gather(empty))
        rows[empty] = len(order) + np.arange(len(empty))
        writer.finish()
    return BinarizedArray(prefix, dtype), rows, len(empty)


def format_distill_report(meta: dict[str, Any], out: Path) -> str:
    d = meta["distillation"]
    train = meta["splits"][TRAIN]
    return (
        f"distilled {train['pairs']:,} training pairs into {out} with {d['teacher']} "
        f"(beam {d['options']['decode']['beam']}, {d['dtype']}): "
        f"mean target {train['tgt_mean_tokens']:.1f} tokens "
        f"(references {d['original_tgt_mean_tokens']:.1f}); {d['empty_outputs_kept_as_reference']} empty "
        f"outputs kept as the reference\n"
        f"train on it: janus train --data {out} ... (add --ar-targets references to keep the AR view on "
        "the original references)"
    )
