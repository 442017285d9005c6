"""The training recipe: load data -> build model, objective, optimizer -> resume -> train -> save.

`train` is the thin orchestrator around `Trainer` (janusgen.training.trainer): it opens and verifies the
data, finds where a run resumes (`resume_point`) and takes the options that may change then (RESUMABLE),
refuses or clears an --out that holds another run (RUN_FILES, `remove_run`), settles the precision on
every rank and builds the model (from a checkpoint with `init_from`) and the objective.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from janusgen import checkpoint as ckpt
from janusgen.config import (
    PRECISIONS,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from janusgen.data.batching import PairBatches
from janusgen.data.dataset import PairDataset
from janusgen.data.tokenizer import TOKENIZER_FILES, TextTokenizer, load_tokenizer, tokenizer_file
from janusgen.errors import JanusError
from janusgen.fileio import check_writable_folder
from janusgen.hardware import resolve_precision
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.training.distributed import barrier, broadcast_float, init_distributed, on_main_rank, shutdown
from janusgen.training.logger import LOG_FILE, truncate_log
from janusgen.training.trainer import Trainer

# options that may change when a run resumes; every other training option comes from the checkpoint
RESUMABLE = (
    "max_updates",
    "time_budget_s",
    "stop_at",
    "log_every",
    "validate_every",
    "valid_bleu_sentences",
    "keep_last",
    "ar_targets",  # with --data a `janus distill` folder: the joint phase on data its own AR view distilled
    "data_workers",
    "deterministic",
    "compile",
)
RUN_FILES = ckpt.RUN_FILES  # what a run writes into its --out folder (all that --overwrite deletes)


def _resumable(path: Path) -> bool:
    files = (ckpt.MODEL_FILE, ckpt.CONFIG_FILE, ckpt.STATE_JSON, ckpt.STATE_TENSORS)
    has_tokenizer = any((path / f).is_file() for f in TOKENIZER_FILES)
    return path.is_dir() and has_tokenizer and all((path / f).is_file() for f in files)


def resume_point(out: Path) -> Path | None:
    """The checkpoint `--resume` continues from: `out/last`, or, where a kill left no complete `last`
    (runs of older versions could lose it between two renames), the newest complete step folder.
    Files are not read: `find_resume_point` also checks them."""
    out = Path(out)
    return next((c for c in _candidates(out) if _resumable(c)), None)


def _candidates(out: Path) -> list[Path]:
    return [out / "last", *sorted((out / "checkpoints").glob("step_*"), reverse=True)]


def find_resume_point(out: Path) -> tuple[Path | None, list[str]]:
    """`resume_point`, passing over a checkpoint that is incomplete or fails its checksums or schemas (a
    damaged `last` falls back to the newest good step); also returns why each newer one was passed over."""
    skipped = []
    for candidate in _candidates(Path(out)):
        if not _resumable(candidate):
            if os.path.lexists(candidate):
                skipped.append(f"{candidate} is incomplete")
            continue
        problem = ckpt.checkpoint_problem(candidate)
        if problem is None:
            return candidate, skipped
        skipped.append(problem)
    return None, skipped


def _nothing_to_resume(out: Path, skipped: list[str]) -> JanusError:
    if skipped:
        return JanusError(f"nothing to resume in {out}: no checkpoint is intact ({'; '.join(skipped)})")
    started = [name for name in RUN_FILES if os.path.lexists(out / name)]
    if started:
        return JanusError(
            f"nothing to resume in {out}: the run there stopped before its first checkpoint (found "
            f"{', '.join(started)}); start it afresh with --overwrite instead of --resume, and its options"
        )
    return JanusError(
        f"nothing to resume in {out}: it has no last and no checkpoint in {out / 'checkpoints'}"
    )


def _repair_best(out: Path, resumed: Path, state: dict[str, Any]) -> None:
    """Make `out/best` the checkpoint that the resumed trainer state names as the best, where a kill (or
    an older janusgen, which wrote `best` after `last`) left it at another step."""
    best_step = state["best_step"]
    if best_step is None:
        return
    best = out / "best"
    try:
        have = ckpt.read_config(best).get("step") if best.is_dir() else None
    except JanusError:
        have = None
    if have == best_step:
        return
    source = resumed if state["step"] == best_step else ckpt.step_folder(out, best_step)
    if ckpt.checkpoint_problem(source) is not None:
        print(
            f"janus: warning: {best} holds step {have}, not the run's best step {best_step}, whose "
            "checkpoint is gone; it is left as it is",
            file=sys.stderr,
        )
        return
    print(
        f"janus: {best} held step {have}, not the run's best step {best_step}: copied {source}",
        file=sys.stderr,
    )
    ckpt.copy_checkpoint(source, best)


def remove_run(out: Path) -> None:
    """Delete what a run wrote into `out` (RUN_FILES), each first renamed to a hidden name so that
    nothing half-deleted is ever seen; anything else in `out` stays."""
    for name in RUN_FILES:
        path = Path(out) / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            hidden = path.with_name(f".{name}.deleting")
            shutil.rmtree(hidden, ignore_errors=True)
            os.replace(path, hidden)
            shutil.rmtree(hidden, ignore_errors=True)


def configure_numerics(device: torch.device, deterministic: bool) -> None:
    """TF32 tensor cores for float32 matmuls on a GPU (autocast covers the rest); with `deterministic`,
    PyTorch's deterministic algorithms and cuBLAS's fixed workspace, so that a rerun with the same
    hardware, software and number of ranks is bit-identical. A kernel with no deterministic version is
    named in a warning rather than stopping the run."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def _initialise_from(model: JanusTransformer, path: Path, tokenizer: TextTokenizer, data: Path) -> None:
    """Load the weights of checkpoint `path` into `model` (fine-tuning a converted pre-trained model)."""
    pretrained, saved_tokenizer, _ = ckpt.load_model(path)
    if saved_tokenizer.model_bytes != tokenizer.model_bytes:
        raise JanusError(
            f"--init-from {path}: its tokenizer is not the one of {data}; prepare the data with "
            f"`janus data prepare --tokenizer {path / saved_tokenizer.file_name}`"
        )
    try:
        model.load_state_dict(pretrained.state_dict())
    except RuntimeError as e:
        raise JanusError(f"--init-from {path}: its weights do not fit the model config ({e})") from e


def train(
    data: Path,
    out: Path,
    model_cfg: ModelConfig | None,
    objective_cfg: ObjectiveConfig | None,
    train_cfg: TrainConfig,
    resume: bool = False,
    device: str = "auto",
    resume_overrides: dict[str, Any] | None = None,
    dist_timeout_s: float = 600.0,
    overwrite: bool = False,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """Train a model on the prepared data folder `data`, writing checkpoints and logs to `out`.

    A fresh run needs `model_cfg` (vocab size and special ids are taken from the data) and
    `objective_cfg`. With `resume=True`, the model, objective and training options come from
    `out/last`, except the options in RESUMABLE, which `resume_overrides` may change.
    Under torchrun, a collective that waits longer than `dist_timeout_s` (a dead or stuck rank)
    fails the job instead of hanging it. A fresh run refuses an `out` that holds another run unless
    `overwrite`, which deletes that run's files (RUN_FILES) and nothing else. A fresh run with
    `init_from` (a checkpoint, e.g. from `janus convert`) starts from its weights; `model_cfg` must then
    describe the same architecture and the data must use the same tokenizer.
    """
    out = Path(out)
    last = out / "last"
    ctx = init_distributed(device, dist_timeout_s)
    try:
        # a file, a read-only mount: said now, not by the logger after the data is read and checked
        check_writable_folder(out, f"--out {out}", may_be_missing=True)
        train_set = PairDataset.open(data, "train")
        valid_set = PairDataset.open(data, "valid")
        tokenizer = train_set.tokenizer

        def verify() -> None:  # checksums and token ids: a corrupt corpus fails here, not mid-run
            for split_set in (train_set, valid_set):
                split_set.verify()

        on_main_rank(ctx, verify)  # one rank reads the whole corpus, not every one of them
        if resume:
            found, skipped = find_resume_point(out)
            if found is None:
                raise _nothing_to_resume(out, skipped)
            state, _ = ckpt.load_trainer_state(found)
            if ctx.is_main:
                if found != last:
                    why = "; ".join(skipped) or f"{last} is missing (a killed run?)"
                    print(f"janus: {why}; resuming from {found}", file=sys.stderr)
                    ckpt.copy_checkpoint(found, last)  # repaired, whatever happens next
                _repair_best(out, found, state)
                truncate_log(out / LOG_FILE, state["step"])  # rows logged after it are logged again
            barrier(ctx)
            last = found
            config = ckpt.read_config(last)
            if "objective" not in config or "train" not in config:
                raise JanusError(
                    f"{last / ckpt.CONFIG_FILE}: not a training checkpoint (no objective or train config)"
                )
            saved_tokenizer = load_tokenizer(tokenizer_file(last))
            if saved_tokenizer.model_bytes != tokenizer.model_bytes:
                raise JanusError(
                    f"the vocabulary of {data} does not match the checkpoint {last}: resume with the "
                    "data folder the run was trained on"
                )
            model_cfg = from_dict(ModelConfig, config["model"], where=str(last / ckpt.CONFIG_FILE))
            objective_cfg = from_dict(
                ObjectiveConfig, config["objective"], where=str(last / ckpt.CONFIG_FILE)
            )
            saved_train = from_dict(TrainConfig, config["train"], where=str(last / ckpt.CONFIG_FILE))
            # a pause (stop_at) belongs to the invocation that asked for it, not to the run
            train_cfg = dataclasses.replace(saved_train, **{"stop_at": None, **(resume_overrides or {})})
        else:
            existing = [name for name in RUN_FILES if os.path.lexists(out / name)]
            if existing and not overwrite and resume_point(out) is None:
                raise JanusError(
                    f"{out} already holds a run that stopped before its first checkpoint (found "
                    f"{', '.join(existing)}): nothing to resume; pass --overwrite to start afresh, or choose "
                    "another --out"
                )
            if existing and not overwrite:
                raise JanusError(
                    f"{out} already holds a run (found {', '.join(existing)}); pass --resume to continue "
                    "it, --overwrite to delete it and start afresh, or choose another --out"
                )
            if overwrite:
                if ctx.is_main:
                    remove_run(out)
                barrier(ctx)
            assert model_cfg is not None and objective_cfg is not None
            model_cfg = dataclasses.replace(
                model_cfg,
                vocab_size=tokenizer.vocab_size,
                pad_id=tokenizer.pad_id,
                unk_id=tokenizer.unk_id,
                bos_id=tokenizer.bos_id,
                eos_id=tokenizer.eos_id,
                mask_id=tokenizer.mask_id,
            )
        if train_cfg.ar_targets == "references" and objective_cfg.kl_ar_nar + objective_cfg.kl_ar_aux > 0:
            raise JanusError(
                "--ar-targets references: the AR view then learns other targets than the NAR/AUX views, so "
                "the KLs between them have nothing in common; add --objective-option kl_ar_nar=0 "
                "--objective-option kl_ar_aux=0"
            )
        precision = resolve_precision(train_cfg.precision, ctx.device, model_cfg.d_model, model_cfg.ffn_dim)
        if ctx.enabled:  # every rank trains in rank 0's choice (the CPU probe may differ by rank)
            chosen = PRECISIONS[int(broadcast_float(ctx, PRECISIONS.index(precision.precision)))]
            if chosen != precision.precision:
                precision = dataclasses.replace(precision, precision=chosen, reason="rank 0's choice")
        train_cfg = dataclasses.replace(train_cfg, precision=precision.precision)
        if ctx.is_main:
            print(f"janus: precision {precision.precision}: {precision.reason}", file=sys.stderr)
        configure_numerics(ctx.device, train_cfg.deterministic)

        torch.manual_seed(train_cfg.seed)
        model = JanusTransformer(model_cfg)
        objective = JanusObjective(objective_cfg, seed=train_cfg.seed)
        if resume:
            trained, _, _ = ckpt.load_model(last)
            model.load_state_dict(trained.state_dict())
        elif init_from is not None:
            _initialise_from(model, Path(init_from), tokenizer, data)
        model.to(ctx.device)
        run_config = {
            "precision": precision.to_dict(),
            "model": to_dict(model_cfg),
            "objective": to_dict(objective_cfg),
            "train": to_dict(train_cfg),
            "data": {
                "dir": str(Path(data).resolve()),
                "src": train_set.meta["src"],
                "tgt": train_set.meta["tgt"],
                # for the model card: what the folder was made from, and its size
                "source": train_set.meta.get("source", {}),
                "pairs": {split: train_set.meta["splits"][split]["pairs"] for split in ("train", "valid")},
            },
        }
        if init_from is not None:
            run_config["init_from"] = str(Path(init_from).resolve())
        trainer = Trainer(
            model,
            objective,
            PairBatches(
                train_set,
                model_cfg,
                train_cfg.max_tokens,
                train_cfg.seed,
                True,
                ctx.rank,
                ctx.world_size,
                ar_on_references=train_cfg.ar_targets == "references",
            ),
            PairBatches(
                valid_set,
                model_cfg,
                train_cfg.max_tokens,
                train_cfg.seed,
                False,
                ctx.rank,
                ctx.world_size,
                even=False,  # every valid batch counts, however few there are for the ranks
            ),
            tokenizer,
            train_cfg,
            ctx,
            out,
            run_config,
        )
        if resume:
            trainer.resume(last)
        return trainer.fit()
    finally:
        shutdown(ctx)
