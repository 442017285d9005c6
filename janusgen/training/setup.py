"""A run's setup from `janus train`'s options: the configs of a new run, the rules of a resumed one.

A new run: the model preset (or the --init-from checkpoint's model) -> the recipe -> the --config file
(YAML or JSON, the keys of a checkpoint's config.json, so that a run's own config reproduces it) -> the
options given, each later one winning. A resumed run: everything from its checkpoint, except the
RESUMABLE options given. `train_with_options` resolves them and calls `recipe.train`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from janusgen import checkpoint as ckpt
from janusgen.config import flag_of, from_dict, to_dict, unknown_keys
from janusgen.errors import JanusError
from janusgen.model.config import ModelConfig
from janusgen.objective_config import ObjectiveConfig
from janusgen.presets import RECIPES, model_preset, objective_preset
from janusgen.training.config import TrainConfig
from janusgen.training.recipe import RESUMABLE, train
from janusgen.training.run_dir import resume_point


@dataclass(frozen=True)
class RunOptions:
    """What `janus train` was asked, before any default is filled in (None: not given)."""

    preset: str | None = None
    objective: str | None = None
    recipe: str | None = None
    init_from: Path | None = None
    config_file: Path | None = None
    model: dict[str, Any] = field(default_factory=dict)  # --model-option KEY=VALUE
    objective_options: dict[str, Any] = field(default_factory=dict)  # --objective-option KEY=VALUE
    train: dict[str, Any] = field(default_factory=dict)  # the TrainConfig flags given


SECTIONS: dict[str, type] = {"model": ModelConfig, "objective": ObjectiveConfig, "train": TrainConfig}
# What a checkpoint's config.json holds besides its sections. `data` and `init_from` stand in for --data
# and --init-from when those are not given; the rest describes the checkpoint, not the run to start
# (the precision chosen is in train.precision too; validation, the results at that step).
RECORD_KEYS = ("data", "init_from", "format_version", "janusgen_version", "step", "precision", "validation")
_PRESET_FIELDS = ("d_model", "ffn_dim", "heads", "encoder_layers", "decoder_layers")


def _yaml_loader() -> type:
    """PyYAML's safe loader, reading 5e-4 as a number: YAML 1.1, which PyYAML follows, wants 5.0e-4 and
    would hand the learning rate over as the text "5e-4"."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    number = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.?[0-9]+[eE][-+]?[0-9]+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", number, list("-+0123456789."))
    return Loader


def read_run_config(path: Path) -> dict[str, Any]:
    """A --config file: YAML or JSON (by its suffix; YAML otherwise, which also reads JSON) with the keys
    of a checkpoint's config.json. An unknown key, at the top or in a section, is an error naming it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise JanusError(f"--config {path}: cannot read it ({e})") from e
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_yaml_loader())
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise JanusError(f"--config {path}: not valid {kind}: {e}") from None
    if not isinstance(values, dict):
        raise JanusError(f"--config {path}: must hold a mapping with keys such as model, objective, train")
    unknown = sorted(set(values) - set(SECTIONS) - set(RECORD_KEYS))
    if unknown:
        raise JanusError(
            f"--config {path}: unknown key {unknown[0]!r}; known: {', '.join([*SECTIONS, *RECORD_KEYS])}"
        )
    for name, cls in SECTIONS.items():
        section = values.get(name, {})
        if not isinstance(section, dict):
            raise JanusError(f"--config {path}: {name} must be a mapping of {cls.__name__} fields")
        bad = unknown_keys(cls, section)
        if bad:
            raise JanusError(f"--config {path}: unknown key {name}.{bad[0]} (not a {cls.__name__} field)")
    data = values.get("data", {})
    if not isinstance(data, dict) or not isinstance(data.get("dir", ""), str):
        raise JanusError(f"--config {path}: data must be a mapping whose dir is the prepared data folder")
    return values


def init_checkpoint(options: RunOptions, file: dict[str, Any]) -> Path | None:
    """The checkpoint a new run starts from: --init-from, else the --config file's init_from."""
    init_from = options.init_from or file.get("init_from")
    return None if init_from is None else Path(init_from)


def run_configs(
    options: RunOptions, file: dict[str, Any], where: str
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """The configs of a new run: preset (or the --init-from model) -> recipe -> the --config `file`'s
    sections -> the options given. `where` names the file in errors."""
    model_file, objective_file = file.get("model", {}), file.get("objective", {})
    if options.preset is not None and model_file:
        raise JanusError(f"--preset {options.preset}: {where} sets the model; drop --preset or its model")
    named = objective_file.get("name")
    if options.objective is not None and named is not None and named != options.objective:
        raise JanusError(f"--objective {options.objective}: {where} trains {named}; give one")
    init_from = init_checkpoint(options, file)
    if init_from is not None:
        if options.preset is not None:
            raise JanusError("--init-from takes the model from the checkpoint: drop --preset")
        config_file = str(init_from / ckpt.CONFIG_FILE)
        base_model = from_dict(ModelConfig, ckpt.read_config(init_from)["model"], where=config_file)
    else:
        base_model = model_preset(options.preset or "small")
    recipe = options.recipe or ("finetune" if init_from is not None else "paper")
    model_cfg, objective_cfg, train_cfg = RECIPES[recipe](
        base_model, objective_preset(options.objective or named or "janus")
    )
    given_train = dict(options.train)
    if "warmup_updates" in given_train:  # an explicit --warmup counts updates, whatever the recipe says
        given_train.setdefault("warmup_fraction", None)
    layers = (
        (ModelConfig, model_cfg, model_file, options.model),
        (ObjectiveConfig, objective_cfg, objective_file, options.objective_options),
        (TrainConfig, train_cfg, file.get("train", {}), given_train),
    )
    built = []
    for cls, recipe_cfg, from_file, given in layers:
        merged = {**to_dict(recipe_cfg), **from_file}
        cfg = from_dict(cls, merged, where=where)  # a bad value in the file is named with the file
        built.append(dataclasses.replace(cfg, **given))
    model_cfg, objective_cfg, train_cfg = built
    return model_cfg, objective_cfg, train_cfg


def check_resume(options: RunOptions, out: Path, overwrite: bool) -> None:
    """--resume takes the model and the training setup from the run's checkpoint: refuse options that
    would be ignored, and a --preset or --objective that says otherwise (one that agrees is fine)."""
    fixed = sorted(set(options.train) - set(RESUMABLE))
    if fixed or options.model or options.objective_options:
        names = (
            [flag_of(TrainConfig, name) for name in fixed]
            + (["--model-option"] if options.model else [])
            + (["--objective-option"] if options.objective_options else [])
        )
        raise JanusError(
            f"--resume takes the model and training setup from the checkpoint; only "
            f"{', '.join(RESUMABLE)} may change (got {', '.join(names)})"
        )
    if overwrite:
        raise JanusError("--resume continues the run in --out and --overwrite deletes it: give one")
    if options.init_from is not None:
        raise JanusError("--resume continues the run in --out; --init-from starts a new one: give one")
    if options.recipe is not None:
        raise JanusError(
            f"--recipe {options.recipe}: --resume takes the training setup from the checkpoint; only "
            f"{', '.join(RESUMABLE)} may change"
        )
    if options.config_file is not None:
        raise JanusError(f"--config {options.config_file}: --resume takes the setup from the checkpoint")
    if options.preset is None and options.objective is None:
        return
    where = resume_point(out)
    if where is None:
        return  # train() says that there is nothing to resume
    config = ckpt.read_config(where)
    if options.objective is not None and options.objective != config["objective"]["name"]:
        raise JanusError(
            f"--objective {options.objective}: the run in {out} trains {config['objective']['name']}; "
            "--resume takes the objective from the checkpoint (drop --objective)"
        )
    if options.preset is not None:
        preset = model_preset(options.preset)
        differ = [f for f in _PRESET_FIELDS if config["model"].get(f) != getattr(preset, f)]
        if differ:
            have = ", ".join(f"{f} {config['model'].get(f)}" for f in differ)
            raise JanusError(
                f"--preset {options.preset}: the model of the run in {out} differs ({have}); "
                "--resume takes the model from the checkpoint (drop --preset)"
            )


def train_with_options(
    data: Path | None,
    out: Path,
    options: RunOptions,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    dist_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """`janus train`: resolve `options` (above) and train; `data` None: the --config file's data.dir."""
    if resume:
        check_resume(options, out, overwrite)
        if data is None:
            raise JanusError("--data: give the prepared data folder the run trains on")
        return train(
            data,
            out,
            None,
            None,
            TrainConfig(),
            resume=True,
            device=device,
            dist_timeout_s=dist_timeout_s,
            resume_overrides=options.train,
        )
    file, where = {}, "the options"
    if options.config_file is not None:
        file, where = read_run_config(options.config_file), f"--config {options.config_file}"
    model_cfg, objective_cfg, train_cfg = run_configs(options, file, where)
    data = data or (file.get("data") or {}).get("dir")
    if data is None:
        raise JanusError("--data: give the prepared data folder (or a --config with data.dir)")
    return train(
        Path(data),
        out,
        model_cfg,
        objective_cfg,
        train_cfg,
        device=device,
        dist_timeout_s=dist_timeout_s,
        overwrite=overwrite,
        init_from=init_checkpoint(options, file),
    )
