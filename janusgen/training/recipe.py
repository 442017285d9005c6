"""The training recipe: load data -> build model, objective, optimizer -> resume -> train -> save.

`train` is the thin orchestrator around `Trainer` (janusgen.training.trainer): it opens and verifies the
data, resumes from where the run folder says (janusgen.training.run_dir) with the options that may change
then (RESUMABLE), or starts afresh in a folder run_dir has checked or cleared, settles the precision on
every rank and builds the model (from a checkpoint with `init_from`) and the objective.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from janusgen import checkpoint as ckpt
from janusgen.config import from_dict, to_dict
from janusgen.data.batching import PairBatches
from janusgen.data.dataset import PairDataset
from janusgen.data.tokenizer import load_tokenizer
from janusgen.data.tokenizer_base import TextTokenizer, tokenizer_file
from janusgen.errors import JanusError
from janusgen.fileio import check_writable_folder
from janusgen.hardware import resolve_precision
from janusgen.model.config import ModelConfig, tokenizer_fields
from janusgen.model.transformer import JanusTransformer
from janusgen.objective_config import ObjectiveConfig
from janusgen.objectives import JanusObjective
from janusgen.training import run_dir
from janusgen.training.config import PRECISIONS, TrainConfig
from janusgen.training.distributed import barrier, broadcast_float, init_distributed, on_main_rank, shutdown
from janusgen.training.trainer import Trainer

log = logging.getLogger(__name__)

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
    `overwrite`, which deletes that run's files (run_dir.RUN_FILES) and nothing else. A fresh run with
    `init_from` (a checkpoint, e.g. from `janus convert`) starts from its weights; `model_cfg` must then
    describe the same architecture and the data must use the same tokenizer.
    """
    out = Path(out)
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
            found, skipped = run_dir.find_resume_point(out)
            if found is None:
                raise run_dir.nothing_to_resume(out, skipped)
            state, _ = ckpt.load_trainer_state(found)
            if ctx.is_main:
                run_dir.repair(out, found, skipped, state)
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
            run_dir.check_fresh(out, overwrite)
            if overwrite:
                if ctx.is_main:
                    run_dir.remove_run(out)
                barrier(ctx)
            assert model_cfg is not None and objective_cfg is not None
            model_cfg = dataclasses.replace(model_cfg, **tokenizer_fields(tokenizer))
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
            log.info(f"janus: precision {precision.precision}: {precision.reason}")
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
