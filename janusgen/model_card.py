"""The model card (README.md) of a checkpoint folder and of a `janus export` output.

A card is a function of the checkpoint's config.json only (model, objective, training settings, data,
the validation results of that step), so the same checkpoint always gets the same card, and nothing in it
is invented: a section whose facts the checkpoint does not record is left out. Keys are listed sorted, as
config.json stores them, so a card made from a config in memory equals one made from the file. The YAML
front matter is the Hugging Face Hub's (library_name, tags, language): a pushed folder is described on its
page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from janusgen.config import from_dict
from janusgen.model.config import ModelConfig
from janusgen.objective_config import ObjectiveConfig

CARD_FILE = "README.md"

# a data side named by an ISO 639-1 code ("es", "en") is a language; other names ("document",
# "summary", a column name) are not, and the card then states no language
_LANGUAGE = re.compile(r"[a-z]{2}")

# what each validation result the trainer records means (training/trainer.py `validate`); {n}: the
# number of validation pairs the quick BLEU decodes
_RESULT_MEANING = {
    "loss": "the training objective (all its weighted terms) on the validation split, fixed masks",
    "bleu_ar": "BLEU of greedy AR decoding on the first {n} validation pairs",
    "bleu_nar": "BLEU of one-pass NAR decoding (one length candidate) on the first {n} validation pairs",
}


def checkpoint_card(config: Mapping[str, Any]) -> str:
    """The README.md of a janusgen checkpoint folder whose config.json holds `config`."""
    usage = (
        "```python\n"
        "from janusgen import Translator  # pip install 'janusgen[hub]'\n\n"
        'translator = Translator.from_pretrained("THIS_FOLDER_OR_HUB_ID")\n'
        f'print(translator.generate(["..."], mode="{_first_mode(config)}"))\n'
        "```\n\n"
        "or `janus generate --checkpoint THIS_FOLDER_OR_HUB_ID --mode ar|nar|speculative --input FILE`."
    )
    return _card(config, "janusgen", "A janusgen checkpoint", usage, [])


def export_card(config: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """The README.md of a `janus export` folder: `info` is its janus_export.json, `config` the config.json
    of the checkpoint it came from."""
    if info["format"] == "hf":
        library = "transformers"
        usage = (
            "```python\n"
            f"from transformers import AutoTokenizer, {info['class']}\n\n"
            'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER_OR_HUB_ID")\n'
            f'model = {info["class"]}.from_pretrained("THIS_FOLDER_OR_HUB_ID")\n'
            'batch = tokenizer(["..."], return_tensors="pt")\n'
            "print(tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True))\n"
            "```\n\n"
            "generation_config.json holds the decoder's start tokens and the tokens janusgen never outputs."
        )
        check = f"its logits differ from janusgen's by at most {info['max_logit_difference']:.2g}"
    else:
        library = "ctranslate2"
        usage = (
            "A CTranslate2 model (`ctranslate2.Translator`); janus_export.json lists the source's BOS/EOS "
            "pieces, the decoder's start tokens and the suppressed tokens to decode as janusgen does."
        )
        check = f"its token log-probs differ from janusgen's by at most {info['max_log_prob_difference']:.2g}"
    facts = [
        f"The autoregressive (AR) view of a janusgen checkpoint, exported with `janus export --format "
        f"{info['format']}` as a {info['architecture']} model ({info['class']}); the non-autoregressive "
        f"view and the length classifier are not part of it. Checked when exported: {check}."
    ]
    return _card(config, library, f"A janusgen model exported for {library}", usage, facts)


def _card(config: Mapping[str, Any], library: str, title: str, usage: str, facts: list[str]) -> str:
    model = from_dict(ModelConfig, config["model"], where="config.json")
    objective = (
        from_dict(ObjectiveConfig, config["objective"], where="config.json")
        if "objective" in config
        else None
    )
    data = config.get("data") or {}
    languages = [data[side] for side in ("src", "tgt") if _LANGUAGE.fullmatch(str(data.get(side, "")))]
    if len(languages) < 2:
        languages = []  # one side a language and the other not: nothing sure to say
    tags = ["janusgen", "text2text-generation"]
    if objective is not None and objective.trains_nar:
        tags.append("non-autoregressive")
    if languages and languages[0] != languages[1]:
        tags.append("translation")
    front = [f"library_name: {library}", "tags:", *(f"- {t}" for t in tags)]
    if languages:
        front += ["language:", *(f"- {lang}" for lang in dict.fromkeys(languages))]
    direction = f" ({data['src']} → {data['tgt']})" if "src" in data and "tgt" in data else ""
    parts = [
        "---\n" + "\n".join(front) + "\n---",
        f"# {title}{direction}",
        "\n\n".join(
            [
                "A janusgen model: one encoder-decoder with an autoregressive view (AR: beam search, "
                "token by token) and a non-autoregressive one (NAR: Mask-Predict, all tokens at once); "
                "the Model section says which views this one trained.",
                *facts,
            ]
        ),
        "## Use\n\n" + usage,
        _model_section(model, objective, config),
        _training_section(config, objective),
        _results_section(config),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _first_mode(config: Mapping[str, Any]) -> str:
    """A decoding mode the checkpoint's objective trained (an `ar` model has no NAR view)."""
    if "objective" not in config:
        return "ar"
    objective = from_dict(ObjectiveConfig, config["objective"], where="config.json")
    return "nar" if objective.trains_nar else "ar"


def _parameters(model: ModelConfig) -> int:
    from janusgen.model.transformer import JanusTransformer

    with torch.device("meta"):  # shapes only: nothing is allocated
        return JanusTransformer(model).num_parameters()


def _model_section(model: ModelConfig, objective: ObjectiveConfig | None, config: Mapping[str, Any]) -> str:
    if objective is not None:
        views = _trained_views(objective)
    elif "converted_from" in config:
        views = "the AR view is the converted model's, the NAR view untrained"
    else:
        views = "no training objective recorded"
    lines = [
        "## Model",
        "",
        f"{_parameters(model):,} parameters: d_model {model.d_model}, {model.encoder_layers} encoder and "
        f"{model.decoder_layers} decoder layers, {model.heads} heads, feed-forward {model.ffn_dim}, "
        f"vocabulary {model.vocab_size}, at most {model.max_positions} positions; {views}. "
        f"Written by janusgen {config.get('janusgen_version', '(unknown version)')}.",
        "",
        _settings("Model config (config.json `model`)", config["model"]),
    ]
    return "\n".join(lines)


def _trained_views(objective: ObjectiveConfig) -> str:
    trained = [view for view, yes in (("AR", objective.trains_ar), ("NAR", objective.trains_nar)) if yes]
    return f"the {' and '.join(trained)} view{'s' * (len(trained) > 1)} trained"


def _training_section(config: Mapping[str, Any], objective: ObjectiveConfig | None) -> str:
    lines = ["## Training", ""]
    if "converted_from" in config:
        source = config["converted_from"]
        lines.append(
            f"Converted with `janus convert` from the Hugging Face model `{source.get('hf')}` "
            f"({source.get('class')}); not trained by janusgen."
        )
    if "averaged_from" in config:
        names = ", ".join(f"`{_short(p)}`" for p in config["averaged_from"])
        lines.append(f"The mean of the weights of {len(config['averaged_from'])} checkpoints ({names}).")
    if objective is not None:
        lines.append(f"Objective `{objective.name}`: {_trained_views(objective)}.")
    if "init_from" in config:
        lines.append(f"Initialised from the checkpoint `{_short(config['init_from'])}`.")
    train = config.get("train")
    if train is not None:
        step = config.get("step")
        lines.append(
            (f"Checkpoint of update {step}" if step is not None else "Trained")
            + f" (of at most {train.get('max_updates')}); batches of {train.get('max_tokens')} tokens, "
            f"learning rate {train.get('lr')}, seed {train.get('seed')}"
            + (f", precision {config['precision']['precision']}" if "precision" in config else "")
            + "."
        )
    data = config.get("data")
    if data:
        lines.append(_data_sentence(data))
    if len(lines) == 2:
        return ""
    lines += [""]
    for key, title in (("objective", "Objective config"), ("train", "Training config")):
        if key in config:
            lines += [_settings(f"{title} (config.json `{key}`)", config[key]), ""]
    return "\n".join(lines).rstrip()


def _data_sentence(data: Mapping[str, Any]) -> str:
    where = f"the prepared data folder `{_short(data['dir'])}`" if "dir" in data else "prepared data"
    sentence = f"Trained on {where}"
    source = data.get("source") or {}
    if source.get("format") == "huggingface":
        task = f", task {source['task']}" if source.get("task") else ""
        sentence += f", made from the Hugging Face dataset `{_short(source['name'])}`{task}"
    elif "folder" in source:
        sentence += f", made from the {source.get('format')} files in `{_short(source['folder'])}`"
    pairs = data.get("pairs") or {}
    if pairs:
        sentence += " (" + ", ".join(f"{split}: {n:,} pairs" for split, n in sorted(pairs.items())) + ")"
    return sentence + "."


def _results_section(config: Mapping[str, Any]) -> str:
    results = config.get("validation")
    if not results:
        return ""
    n = (config.get("train") or {}).get("valid_bleu_sentences", "?")
    lines = [
        "## Results",
        "",
        f"Measured by the trainer at update {config.get('step')} on the validation split of the data above.",
        "",
        "| metric | value | what |",
        "|---|---|---|",
    ]
    known = list(_RESULT_MEANING)  # those first, then the objective's terms by name
    for name in sorted(results, key=lambda n: (known.index(n) if n in known else len(known), n)):
        value = results[name]
        meaning = _RESULT_MEANING.get(name, f"the objective's `{name}` term on the validation split")
        lines.append(f"| {name} | {value:.4g} | {meaning.format(n=n)} |")
    return "\n".join(lines)


def _settings(title: str, values: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {json.dumps(value)} |" for key, value in sorted(values.items()))
    return f"<details><summary>{title}</summary>\n\n| setting | value |\n|---|---|\n{rows}\n\n</details>"


def _short(path: str) -> str:
    """A local path by its last component: the card is published, the machine's folders are not."""
    return Path(path).name if Path(path).is_absolute() else path
