"""`janus average`: the weights of several checkpoints of one run averaged into a new checkpoint
(fairseq-style averaging of the last N), written only where nothing but an earlier average is lost."""

from __future__ import annotations

import os
from pathlib import Path

from janusgen import checkpoint as ckpt
from janusgen.data.tokenizer_base import tokenizer_file
from janusgen.errors import JanusError
from janusgen.fileio import read_json, sha256_file
from janusgen.schema import read_checked
from janusgen.training.run_dir import RUN_FILES, run_of

AVERAGED_FROM = "averaged_from"  # the config.json key that marks a folder `janus average` wrote


def _written_by_average(folder: Path) -> list[str]:
    """What replacing `folder` would delete that `average_checkpoints` did not write there: nothing for
    its own earlier output, every entry for any other folder."""
    entries = sorted(e.name + ("/" if e.is_dir() and not e.is_symlink() else "") for e in folder.iterdir())
    try:
        sums = read_checked(folder / ckpt.CHECKSUMS_FILE, ckpt.CHECKSUMS_SCHEMA)["sha256"]
        config = read_json(folder / ckpt.CONFIG_FILE)
    except JanusError:
        return entries  # an empty folder loses nothing
    if not isinstance(config, dict) or AVERAGED_FROM not in config:
        return entries
    return sorted(
        entry.name + ("/" if entry.is_dir() else "")
        for entry in folder.iterdir()
        if entry.is_symlink()
        or not entry.is_file()
        or (entry.name not in sums and entry.name != ckpt.CHECKSUMS_FILE)
    )


def check_average_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an --out whose replacement could lose anything: an input checkpoint or a folder holding one,
    a run folder or anything of a run's own (last, best, checkpoints/, ...), an existing file, or an
    existing folder that `janus average` did not write itself (an earlier average is replaced)."""
    out = Path(out)
    target = out.resolve()
    runs = {run for run in map(run_of, inputs) if run is not None}
    for run in sorted(runs):
        if target == run or target in run.parents:
            relation = "is the run folder" if target == run else "holds the run folder"
            raise JanusError(f"--out {out} {relation} {run}; choose a new folder, e.g. {run / 'avg'}")
        for name in RUN_FILES:
            if target == run / name or run / name in target.parents:
                raise JanusError(f"--out {out} is inside the run's own {name}; choose another --out")
    for p in inputs:
        source = Path(p).resolve()
        if target == source or target in source.parents or source in target.parents:
            relation = "is the checkpoint" if target == source else "holds or is inside the checkpoint"
            raise JanusError(f"--out {out} {relation} {p} that is averaged; choose another --out")
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise JanusError(f"--out {out} exists and is not a folder; choose another --out")
    foreign = _written_by_average(out)
    if foreign:  # (an empty folder is replaced: nothing is lost)
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise JanusError(
            f"--out {out} exists and holds what `janus average` did not write ({shown}); average replaces "
            "only its own earlier output: choose another --out"
        )


def average_checkpoints(paths: list[Path], out: Path) -> None:
    """Average the weights of several checkpoints of the same model and objective (fairseq-style averaging
    of the last N), keeping the first one's config and tokenizer; the result has no trainer state. `out`
    must be new or an earlier output of this function (`check_average_output`)."""
    if len(paths) < 1:
        raise JanusError("average: give at least one checkpoint")
    check_average_output(out, paths)
    model, tokenizer, config = ckpt.load_model(paths[0])
    vocabulary = sha256_file(tokenizer_file(Path(paths[0])))
    total = {k: v.double().clone() for k, v in model.state_dict().items()}
    for p in paths[1:]:
        other = ckpt.read_config(p)
        for key in ("model", "objective"):
            if other.get(key) != config.get(key):
                name = (other.get(key) or {}).get("name"), (config.get(key) or {}).get("name")
                named = f" ({name[0]} against {name[1]})" if key == "objective" and all(name) else ""
                raise JanusError(
                    f"average: {p} has another {key} config than {paths[0]}{named}; average checkpoints "
                    "of one run"
                )
        ckpt.verify_files(Path(p), (ckpt.MODEL_FILE, tokenizer_file(Path(p)).name))
        ckpt.check_weight_shapes(Path(p) / ckpt.MODEL_FILE, model.cfg, Path(p) / ckpt.CONFIG_FILE)
        if sha256_file(tokenizer_file(Path(p))) != vocabulary:
            raise JanusError(
                f"average: {p} has another vocabulary than {paths[0]}; average checkpoints of one run"
            )
        weights = ckpt.load_tensors(Path(p) / ckpt.MODEL_FILE)
        if set(weights) != set(total):
            raise JanusError(
                f"average: {p / ckpt.MODEL_FILE} holds other weights than {paths[0] / ckpt.MODEL_FILE}"
            )
        for k in total:
            total[k] += weights[k].double()
    model.load_state_dict({k: (v / len(paths)).to(model.state_dict()[k].dtype) for k, v in total.items()})
    # the validation results were measured on the first input, not on the average
    dropped = ("format_version", "janusgen_version", "validation")
    config = {k: v for k, v in config.items() if k not in dropped}
    config[AVERAGED_FROM] = [str(p) for p in paths]
    check_average_output(out, paths)  # again: files may have appeared there meanwhile
    ckpt.save_checkpoint(out, model, tokenizer, config)
