"""The model card (README.md) of every checkpoint: what the run knows, and nothing invented."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from janusgen.checkpoint import CHECKSUMS_FILE, checkpoint_problem, load_model, read_config, verify_files
from janusgen.config import to_dict
from janusgen.model_card import CARD_FILE, checkpoint_card
from janusgen.presets import model_preset, objective_preset
from janusgen.training.average import average_checkpoints
from janusgen.training.recipe import train
from tests.conftest import QUICK

BLEU_SENTENCES = 8


@pytest.fixture(scope="module")
def run(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two updates of a tiny janus model on the toy es -> en data, validated (with BLEU) at each."""
    cfg = dataclasses.replace(QUICK, valid_bleu_sentences=BLEU_SENTENCES)
    out = tmp_path_factory.mktemp("card") / "run"
    train(toy_data, out, model_preset("tiny"), objective_preset("janus"), cfg, device="cpu")
    return out


def _front_matter(card: str) -> list[str]:
    head, sep, _ = card.removeprefix("---\n").partition("\n---\n")
    assert card.startswith("---\n") and sep
    return head.splitlines()


def test_every_checkpoint_has_a_card_made_from_its_config(run):
    for folder in (run / "last", run / "best", run / "checkpoints" / "step_00000001"):
        card = (folder / CARD_FILE).read_text(encoding="utf-8")
        assert card == checkpoint_card(read_config(folder))


def test_the_card_states_the_model_recipe_data_and_measured_results(run, toy_data):
    card = (run / "last" / CARD_FILE).read_text(encoding="utf-8")
    config = read_config(run / "last")
    assert _front_matter(card) == [
        "library_name: janusgen",
        "tags:",
        "- janusgen",
        "- text2text-generation",
        "- non-autoregressive",
        "- translation",
        "language:",
        "- es",
        "- en",
    ]
    assert "\n# A janusgen checkpoint (es → en)\n" in card
    model, _, _ = load_model(run / "last")
    assert f"{model.num_parameters():,} parameters: d_model {model.cfg.d_model}" in card
    assert "Objective `janus`: the AR and NAR views trained." in card
    assert "Checkpoint of update 2 (of at most 2); batches of 512 tokens, learning rate 0.002, seed 3" in card
    assert "precision fp32" in card
    assert (
        "Trained on the prepared data folder `data`, made from the text files in `text` "
        "(train: 600 pairs, valid: 40 pairs)."
    ) in card
    for key, value in config["model"].items():  # the whole config, in a table
        assert f"| {key} | {json.dumps(value)} |" in card
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    measured = [row for row in log if row["split"] == "valid" and row["step"] == 2][-1]
    assert config["validation"] == {k: v for k, v in measured.items() if k not in ("step", "split")}
    assert {"loss", "bleu_ar", "bleu_nar", "ar", "nar"} <= set(config["validation"])
    for name, value in config["validation"].items():
        assert f"| {name} | {value:.4g} |" in card
    assert f"BLEU of greedy AR decoding on the first {BLEU_SENTENCES} validation pairs" in card
    assert str(toy_data.parent) not in card  # the machine's folders stay private


def test_the_card_is_checksummed_but_editing_it_keeps_the_checkpoint_usable(run, tmp_path):
    """the card is documentation: a user may add a license before pushing; loading and resuming
    verify the files they read, never the card."""
    folder = Path(shutil.copytree(run / "last", tmp_path / "last"))
    sums = json.loads((folder / CHECKSUMS_FILE).read_text())["sha256"]
    assert CARD_FILE in sums
    verify_files(folder, (CARD_FILE,))
    with (folder / CARD_FILE).open("a", encoding="utf-8") as f:
        f.write("\nLicense: CC0.\n")
    load_model(folder)
    assert checkpoint_problem(folder) is None


def test_an_averaged_checkpoint_claims_no_results_of_its_inputs(run, tmp_path):
    steps = [run / "checkpoints" / "step_00000001", run / "checkpoints" / "step_00000002"]
    average_checkpoints(steps, tmp_path / "avg")
    card = (tmp_path / "avg" / CARD_FILE).read_text(encoding="utf-8")
    assert "The mean of the weights of 2 checkpoints (`step_00000001`, `step_00000002`)." in card
    assert "## Results" not in card and "validation" not in read_config(tmp_path / "avg")


@pytest.mark.parametrize(
    "change, present, absent",
    [
        (
            lambda c: {**c, "objective": to_dict(objective_preset("ar"))},
            ['mode="ar"', "Objective `ar`: the AR view trained."],
            ["- non-autoregressive", 'mode="nar"'],
        ),
        (
            lambda c: {**c, "data": {**c["data"], "src": "document", "tgt": "summary"}},
            ["(document → summary)"],
            ["language:", "- translation"],
        ),
        (
            lambda c: {
                "format_version": c["format_version"],
                "model": c["model"],
                "converted_from": {"hf": "facebook/bart-base", "class": "BartForConditionalGeneration"},
            },
            [
                "Converted with `janus convert` from the Hugging Face model `facebook/bart-base`",
                "the AR view is the converted model's, the NAR view untrained",
                'mode="ar"',
            ],
            ["## Results", "language:", "Objective", "Trained on"],
        ),
    ],
    ids=["ar-objective", "no-languages", "converted"],
)
def test_the_card_says_only_what_the_config_records(run, change, present, absent):
    config = change(read_config(run / "last"))
    card = checkpoint_card(config)
    for text in present:
        assert text in card
    for text in absent:
        assert text not in card
