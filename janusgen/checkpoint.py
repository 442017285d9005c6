"""Self-contained, safe checkpoints: a folder that holds everything needed to decode or to resume.

    model.safetensors          weights
    config.json                format version, package version, model / objective / train configs, data info
    spm.model                  the SentencePiece vocabulary (or tokenizer.json: a pre-trained HF tokenizer)
    trainer_state.json         step, sampler position, best score, optimizer hyper-parameters  (resume only)
    trainer_state.safetensors  optimizer moments                                                 (resume only)
    README.md                  the model card (janusgen/model_card.py): what the folder holds, for people
    checksums.json             sha256 of every other file, written last; checked on load

No RNG state is saved: masks and dropout are reseeded per batch from (seed, epoch, batch).
Only safetensors and JSON are read back: loading never unpickles anything. Folders are written
atomically (temporary folder, then rename), so a killed run leaves the previous checkpoint intact.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

import janusgen
from janusgen.config import from_dict
from janusgen.data.tokenizer import load_tokenizer
from janusgen.data.tokenizer_base import TOKENIZER_FILES, TextTokenizer, tokenizer_file
from janusgen.errors import JanusError
from janusgen.fileio import atomic_directory, copy_file, read_json, sha256_file, write_json
from janusgen.model.config import ModelConfig
from janusgen.model.transformer import JanusTransformer
from janusgen.model_card import CARD_FILE, checkpoint_card
from janusgen.schema import (
    Anything,
    Flag,
    Int,
    ListOf,
    MapOf,
    Nullable,
    Number,
    Record,
    Text,
    check,
    read_checked,
)

CHECKPOINT_FORMAT_VERSION = 1  # of a checkpoint folder: bump when its layout changes incompatibly
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
CHECKSUMS_FILE = "checksums.json"

# What janusgen writes into each JSON file of a checkpoint (janusgen.schema): a file that does not fit is
# refused when it is read, naming the key, even when its checksum matches (an edited, re-signed file).
CHECKSUMS_SCHEMA = Record({"sha256": MapOf(Text())})
CONFIG_SCHEMA = Record(
    {
        "format_version": Int(),
        "model": MapOf(),  # its values are checked by ModelConfig
        "objective": MapOf(),
        "train": MapOf(),
        "precision": MapOf(),
        "data": MapOf(),
        "step": Int(0),
        "validation": MapOf(Number()),  # the trainer's results at `step` (Trainer.validate)
    },
    optional=("objective", "train", "precision", "data", "step", "validation"),
)
TRAINER_STATE_SCHEMA = Record(
    {
        "step": Int(0),
        "elapsed_s": Number(0),
        "best_value": Nullable(Number()),
        "best_step": Nullable(Int(0)),
        "sampler": Record({"epoch": Int(0), "consumed": Int(0), "seed": Int(0)}),
        "objective": Record({"ar_fixed": MapOf(Flag())}, optional=("ar_fixed",)),
        "optimizer": Record(
            {
                "param_groups": ListOf(
                    Record(
                        {
                            "params": ListOf(Int(0)),
                            "lr": Number(0),
                            "betas": ListOf(Number(), length=2),
                            "eps": Number(0),
                            "weight_decay": Number(0),
                        },
                        optional=("betas", "eps", "weight_decay"),
                    )
                ),
                "scalars": MapOf(Anything()),
            }
        ),
        "scaler": Nullable(MapOf()),
        "world_size": Int(1),
    },
    optional=("objective", "scaler", "world_size"),
)


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def save_tensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """safetensors' save_file, whose failures (a full disk) become the OSError they are, naming `path`."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:
        found = _OS_ERROR.search(str(e))
        code = int(found.group(1)) if found else errno.EIO
        Path(path).unlink(missing_ok=True)
        raise OSError(code, os.strerror(code), str(path)) from None


def save_checkpoint(
    path: Path,
    model: JanusTransformer | Mapping[str, torch.Tensor],
    tokenizer: TextTokenizer,
    config: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
    state_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a checkpoint folder atomically. `model`: the model, or a copy of its state dict (the trainer
    writes in the background from a copy); `config` holds JSON-able configs (model, objective, ...)."""
    state = model.state_dict() if isinstance(model, JanusTransformer) else model
    with atomic_directory(Path(path)) as tmp:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        save_tensors(weights, tmp / MODEL_FILE, metadata={"format": "pt"})
        versions = {"format_version": CHECKPOINT_FORMAT_VERSION, "janusgen_version": janusgen.__version__}
        config = {**versions, **config}
        write_json(tmp / CONFIG_FILE, config)
        (tmp / CARD_FILE).write_text(checkpoint_card(config), encoding="utf-8")
        tokenizer.save(tmp / tokenizer.file_name)
        if trainer_state is not None:
            write_json(tmp / STATE_JSON, trainer_state)
            save_tensors(
                {k: v.detach().to("cpu").contiguous() for k, v in (state_tensors or {}).items()},
                tmp / STATE_TENSORS,
            )
        write_json(
            tmp / CHECKSUMS_FILE,
            {"sha256": {f.name: sha256_file(f) for f in sorted(tmp.iterdir()) if not f.name.startswith(".")}},
        )


def verify_files(path: Path, names: tuple[str, ...]) -> None:
    """Check files of checkpoint `path` against its checksums.json. Checkpoints written before
    janusgen kept checksums have none: they load unchecked."""
    manifest_path = Path(path) / CHECKSUMS_FILE
    if not manifest_path.is_file():
        return
    sums = read_checked(manifest_path, CHECKSUMS_SCHEMA)["sha256"]
    for name in names:
        if name not in sums:
            raise JanusError(f"{Path(path) / name}: not in {manifest_path} (the checkpoint is corrupt)")
        if sha256_file(Path(path) / name) != sums[name]:
            raise JanusError(
                f"{Path(path) / name}: its sha256 does not match {manifest_path}: the file is corrupt "
                "or was changed (use another checkpoint, e.g. one in checkpoints/)"
            )


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file, with a clear error for a truncated or corrupt one."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise JanusError(f"{path}: not a readable safetensors file, truncated or corrupt ({e})") from e


_NAMES_SHOWN = 3  # of the weights that do not fit, in an error


def check_weight_shapes(weights_file: Path, model_cfg: ModelConfig, config_file: Path) -> None:
    """Compare the tensor names and shapes in the safetensors header of `weights_file` with those of the
    model `model_cfg` describes, before anything is allocated: the model is built on the meta device (no
    memory), and the header is read without the tensors."""
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in JanusTransformer(model_cfg).state_dict().items()}
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise JanusError(
            f"{weights_file}: not a readable safetensors file, truncated or corrupt ({e})"
        ) from e
    problems = {
        "missing": sorted(set(expected) - set(found)),
        "unexpected": sorted(set(found) - set(expected)),
        "of another shape": [
            f"{name} {list(found[name])} instead of {list(shape)}"
            for name, shape in sorted(expected.items())
            if name in found and found[name] != shape
        ],
    }
    parts = [
        f"{len(names)} {what} ({', '.join(names[:_NAMES_SHOWN])}{' ...' * (len(names) > _NAMES_SHOWN)})"
        for what, names in problems.items()
        if names
    ]
    if parts:
        raise JanusError(
            f"{weights_file}: the weights do not fit the model of {config_file}: {'; '.join(parts)}"
        )


def read_config(path: Path) -> dict[str, Any]:
    """The validated config.json of a checkpoint folder."""
    path = Path(path)
    if not path.is_dir():
        raise JanusError(f"checkpoint {path} does not exist or is not a folder")
    missing = [f for f in (MODEL_FILE, CONFIG_FILE) if not (path / f).is_file()]
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise JanusError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    verify_files(path, (CONFIG_FILE,))
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict):
        raise JanusError(f"{path / CONFIG_FILE}: must be a JSON object (the checkpoint is corrupt)")
    version = config.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise JanusError(
            f"{path / CONFIG_FILE}: checkpoint format {version!r} was written by another version "
            f"of janusgen (this one reads format {CHECKPOINT_FORMAT_VERSION})"
        )
    return check(path / CONFIG_FILE, config, CONFIG_SCHEMA)


def load_model(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[JanusTransformer, TextTokenizer, dict[str, Any]]:
    """Model (in eval mode), tokenizer and config of a checkpoint folder."""
    path = Path(path)
    config = read_config(path)
    model_cfg = from_dict(ModelConfig, config["model"], where=str(path / CONFIG_FILE))
    verify_files(path, (MODEL_FILE, tokenizer_file(path).name))
    check_weight_shapes(path / MODEL_FILE, model_cfg, path / CONFIG_FILE)
    weights = load_tensors(path / MODEL_FILE)
    model = JanusTransformer(model_cfg)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, OSError, ValueError) as e:
        raise JanusError(f"{path / MODEL_FILE}: weights do not match the config ({e})") from e
    tokenizer = load_tokenizer(tokenizer_file(path))
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise JanusError(
            f"{path}: tokenizer has {tokenizer.vocab_size} pieces but the model {model_cfg.vocab_size}"
        )
    return model.to(device).eval(), tokenizer, config


def load_trainer_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    path = Path(path)
    if not (path / STATE_JSON).is_file() or not (path / STATE_TENSORS).is_file():
        raise JanusError(
            f"checkpoint {path} has no trainer state (it cannot be resumed; it can still decode)"
        )
    verify_files(path, (STATE_JSON, STATE_TENSORS))
    state = read_checked(path / STATE_JSON, TRAINER_STATE_SCHEMA)
    if state["best_step"] is not None and state["best_step"] > state["step"]:
        raise JanusError(
            f"{path / STATE_JSON}: best_step {state['best_step']} is past step {state['step']} (corrupt)"
        )
    return state, load_tensors(path / STATE_TENSORS)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split an optimizer state_dict into JSON (hyper-parameters) and named tensors."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def restore_optimizer(
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    where: Path | str = "the trainer state",
) -> None:
    """Load what `optimizer_state` split, refusing tensors that do not belong to the optimizer's
    parameters (a wrong index or shape would only fail later, mid-update, or train on the wrong moments).
    `where`: the checkpoint folder, for the errors."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    tensors_file = Path(where) / STATE_TENSORS
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        prefix, _, rest = name.partition(".")
        index, _, key = rest.partition(".")
        if prefix != "optimizer" or not index.isdigit() or not key:
            raise JanusError(f"{tensors_file}: unexpected tensor {name!r} (not an optimizer moment)")
        if int(index) >= len(params):
            raise JanusError(
                f"{tensors_file}: tensor {name} is for parameter {index}, but the model trains "
                f"{len(params)} parameters"
            )
        shape = tuple(params[int(index)].shape)
        if key != "step" and tuple(value.shape) != shape:
            raise JanusError(
                f"{tensors_file}: tensor {name} has shape {tuple(value.shape)}, but parameter {index} "
                f"has shape {shape}"
            )
        state.setdefault(int(index), {})[key] = value
    json_file = Path(where) / STATE_JSON
    for name, value in meta["scalars"].items():
        index, _, key = name.partition(".")
        if not index.isdigit() or not key or int(index) >= len(params):
            raise JanusError(f"{json_file}: optimizer.scalars has an unexpected entry {name!r}")
        state.setdefault(int(index), {})[key] = value
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise JanusError(f"{json_file}: the optimizer state does not fit this model ({e})") from None


def copy_checkpoint(source: Path, target: Path) -> None:
    """Make `target` a checkpoint folder identical to `source`, atomically. Its files are copies (or
    reflinks), never hard links to `source`'s: `last`, `best` and a step folder stay independent, so one
    damaged file spoils one checkpoint, not three."""
    with atomic_directory(Path(target)) as tmp:
        for f in sorted(Path(source).iterdir()):
            if f.is_file() and not f.name.startswith("."):
                copy_file(f, tmp / f.name)


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder `path` cannot be resumed from (incomplete, or a file that fails its
    checksum), or None. Reads every file once: for choosing where a run resumes, not for decoding."""
    path = Path(path)
    if not path.is_dir():
        return f"{path} is missing"
    try:
        read_config(path)
        verify_files(path, (MODEL_FILE, tokenizer_file(path).name, STATE_JSON, STATE_TENSORS))
        load_trainer_state(path)
    except JanusError as e:
        return str(e)
    return None


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder: first renamed to a hidden name, so it is never seen half-deleted."""
    path = Path(path)
    hidden = path.with_name(f".{path.name}.deleting")
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)
