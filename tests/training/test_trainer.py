"""The training recipe end to end on a tiny model: losses, exact resume, checkpoints, bad options."""

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from janusgen.checkpoint import load_model, read_config
from janusgen.cli import main
from janusgen.errors import JanusError
from janusgen.presets import model_preset, objective_preset
from janusgen.training.average import average_checkpoints
from janusgen.training.config import TrainConfig
from janusgen.training.recipe import train
from tests.conftest import train_argv

FAST = TrainConfig(
    max_updates=6,
    max_tokens=512,
    lr=2e-3,
    warmup_updates=2,
    log_every=1,
    validate_every=3,
    valid_bleu_sentences=0,
    seed=3,
    precision="fp32",  # the golden losses are float32's, whatever the CPU
)


def _train_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def _run(toy_data, out, objective="janus", cfg=FAST, **kw):
    return train(toy_data, out, model_preset("tiny"), objective_preset(objective), cfg, device="cpu", **kw)


@pytest.mark.parametrize("objective", ["ar", "cmlm", "janus"])
def test_training_lowers_the_loss_and_writes_checkpoints(toy_data, tmp_path, objective):
    cfg = dataclasses.replace(FAST, max_updates=12, validate_every=6, valid_bleu_sentences=16)
    summary = _run(toy_data, tmp_path / "run", objective, cfg)
    assert summary["step"] == 12 and summary["stop"] == "max_updates"
    losses = _train_losses(tmp_path / "run")
    assert losses[12] < losses[1]
    for name in ("last", "best", "checkpoints/step_00000006", "checkpoints/step_00000012"):
        assert (tmp_path / "run" / name / "model.safetensors").is_file()
    model, tokenizer, config = load_model(tmp_path / "run" / "last")
    assert config["objective"]["name"] == objective and config["step"] == 12
    assert model.cfg.vocab_size == tokenizer.vocab_size == 64
    valid = [
        json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"valid"' in x
    ]
    expected_terms = {
        "ar": {"ar", "bleu_ar"},
        "cmlm": {"nar", "length", "bleu_nar"},
        "janus": {"ar", "nar", "aux", "length", "kl_ar_nar", "bleu_ar", "bleu_nar"},
    }
    assert expected_terms[objective] <= set(valid[-1])


def test_golden_first_losses(toy_data, tmp_path):
    """The first loss values of a tiny seeded janus run, pinned: a change to the model, masks, data
    order or loss that alters training shows up here."""
    cfg = dataclasses.replace(FAST, max_updates=3, validate_every=3)
    _run(toy_data, tmp_path / "run", "janus", cfg)
    losses = _train_losses(tmp_path / "run")
    assert [losses[s] for s in (1, 2, 3)] == pytest.approx([10.912, 11.075, 10.164], abs=2e-3)


def _assert_same_run(a: Path, b: Path, updates: int) -> None:
    """The two runs logged the same training losses and ended with bit-identical weights."""
    losses_a, losses_b = _train_losses(a), _train_losses(b)
    assert [losses_a[s] for s in range(1, updates + 1)] == [losses_b[s] for s in range(1, updates + 1)]
    weights_a = load_file(str(a / "last" / "model.safetensors"))
    weights_b = load_file(str(b / "last" / "model.safetensors"))
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_resumed_run_equals_the_uninterrupted_one(toy_data, tmp_path):
    _run(toy_data, tmp_path / "full")
    _run(toy_data, tmp_path / "split", cfg=dataclasses.replace(FAST, max_updates=3))
    _run(toy_data, tmp_path / "split", cfg=FAST, resume=True, resume_overrides={"max_updates": 6})
    _assert_same_run(tmp_path / "full", tmp_path / "split", updates=6)


@pytest.mark.slow
def test_data_loader_workers_change_nothing_and_resume_where_the_training_was(toy_data, tmp_path):
    """Batches made ahead by worker processes (a GPU's default) are the batches made in the training
    thread, masks included; the checkpoint records the position of the last batch trained on, not of
    the last one prefetched, so a resumed run equals the uninterrupted one."""
    _run(toy_data, tmp_path / "inline")
    workers = dataclasses.replace(FAST, data_workers=2)
    _run(toy_data, tmp_path / "workers", cfg=workers)
    _assert_same_run(tmp_path / "inline", tmp_path / "workers", updates=6)
    _run(toy_data, tmp_path / "split", cfg=dataclasses.replace(workers, max_updates=3))
    _run(toy_data, tmp_path / "split", cfg=FAST, resume=True, resume_overrides={"max_updates": 6})
    _assert_same_run(tmp_path / "inline", tmp_path / "split", updates=6)


def test_a_time_budget_counts_the_training_time_before_a_resume(toy_data, tmp_path):
    """--time-budget is the training time of the whole run: a resumed run goes on from the elapsed time
    its checkpoint saved. Resumed with a budget equal to the time already spent, it stops after one
    update; a clock reset on resume would train on for several more."""
    cfg = dataclasses.replace(FAST, max_updates=12, time_budget_s=3600.0, stop_at=4)
    paused = _run(toy_data, tmp_path / "run", cfg=cfg)
    assert paused["step"] == 4 and paused["stop"] == "stop_at" and paused["elapsed_s"] > 0
    spent = paused["elapsed_s"]
    summary = train(
        toy_data,
        tmp_path / "run",
        None,
        None,
        TrainConfig(),
        resume=True,
        device="cpu",
        resume_overrides={"time_budget_s": spent},
    )
    assert summary["stop"] == "time_budget" and summary["step"] == 5
    assert summary["elapsed_s"] > spent


def test_a_run_paused_with_stop_at_and_resumed_equals_the_uninterrupted_one(toy_data, tmp_path):
    """--stop-at pauses a run whose schedules (warmup and AR-only phase, fractions of the run) still
    span --max-updates; a plain --resume goes on to the end, exactly as if never paused."""
    cfg = dataclasses.replace(FAST, warmup_updates=0, warmup_fraction=0.5)
    objective = dataclasses.replace(objective_preset("janus"), ar_only_fraction=0.5)
    model = model_preset("tiny")
    train(toy_data, tmp_path / "full", model, objective, cfg, device="cpu")
    paused = train(
        toy_data, tmp_path / "split", model, objective, dataclasses.replace(cfg, stop_at=4), device="cpu"
    )
    assert paused["step"] == 4 and paused["stop"] == "stop_at"
    assert (tmp_path / "split" / "last" / "model.safetensors").is_file()
    with pytest.raises(JanusError, match="--stop-at 3: the run is already at update 4"):
        train(
            toy_data,
            tmp_path / "split",
            None,
            None,
            TrainConfig(),
            resume=True,
            resume_overrides={"stop_at": 3},
        )
    summary = train(toy_data, tmp_path / "split", None, None, TrainConfig(), resume=True, device="cpu")
    assert summary["step"] == 6 and summary["stop"] == "max_updates"
    _assert_same_run(tmp_path / "full", tmp_path / "split", updates=6)


def _valid_rows(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if r["split"] == "valid"}


def test_resumed_run_logs_the_same_validation_and_best_as_the_uninterrupted_one(toy_data, tmp_path):
    """The valid masks are fixed per run: neither the number of earlier validations nor a resume
    changes a validation loss, so `best` is the same checkpoint too."""
    cfg = dataclasses.replace(FAST, max_updates=6, validate_every=2)
    _run(toy_data, tmp_path / "full", "janus", cfg)
    _run(toy_data, tmp_path / "split", "janus", dataclasses.replace(cfg, max_updates=2))
    _run(toy_data, tmp_path / "split", cfg=cfg, resume=True, resume_overrides={"max_updates": 6})
    full, split = _valid_rows(tmp_path / "full"), _valid_rows(tmp_path / "split")
    assert sorted(full) == sorted(split) == [2, 4, 6]
    assert full == split
    best = [
        json.loads((tmp_path / run / "best" / "config.json").read_text())["step"] for run in ("full", "split")
    ]
    assert best[0] == best[1]


def test_validating_the_same_weights_again_gives_the_same_losses(toy_data, tmp_path, monkeypatch):
    from janusgen.training.trainer import Trainer

    seen: list[list[dict]] = []
    validate = Trainer.validate

    def thrice(self):
        results = [validate(self) for _ in range(3)]
        seen.append(results)
        return results[0]

    monkeypatch.setattr(Trainer, "validate", thrice)
    _run(toy_data, tmp_path / "run", "janus", dataclasses.replace(FAST, max_updates=2, validate_every=1))
    assert len(seen) == 2
    for results in seen:
        assert results[0] == results[1] == results[2]


def test_gradient_accumulation_consumes_update_freq_batches_per_update(toy_data, tmp_path):
    cfg = dataclasses.replace(FAST, update_freq=2, max_updates=2, validate_every=2)
    summary = _run(toy_data, tmp_path / "acc", cfg=cfg)
    assert summary["step"] == 2
    state = json.loads((tmp_path / "acc" / "last" / "trainer_state.json").read_text())
    assert state["sampler"]["consumed"] == 4  # two updates x two batches


def test_time_budget_stops_and_saves(toy_data, tmp_path):
    cfg = dataclasses.replace(FAST, max_updates=10_000, time_budget_s=0.0)
    summary = _run(toy_data, tmp_path / "run", cfg=cfg)
    assert summary["stop"] == "time_budget" and summary["step"] == 1
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


def test_keep_last_prunes_old_step_checkpoints(toy_data, tmp_path):
    cfg = dataclasses.replace(FAST, max_updates=4, validate_every=1, keep_last=2)
    _run(toy_data, tmp_path / "run", cfg=cfg)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["step_00000003", "step_00000004"]


def test_bf16_autocast_trains_on_cpu(toy_data, tmp_path):
    cfg = dataclasses.replace(FAST, max_updates=2, validate_every=2, precision="bf16")
    assert _run(toy_data, tmp_path / "run", cfg=cfg)["step"] == 2


def test_checkpoint_is_safetensors_json_and_spm_only(toy_data, tmp_path):
    """and its model card, README.md (tests/test_model_card.py)"""
    _run(toy_data, tmp_path / "run", cfg=dataclasses.replace(FAST, max_updates=1, validate_every=1))
    files = sorted(p.name for p in (tmp_path / "run" / "last").iterdir())
    assert files == [
        "README.md",
        "checksums.json",
        "config.json",
        "model.safetensors",
        "spm.model",
        "trainer_state.json",
        "trainer_state.safetensors",
    ]


def test_average_of_checkpoints_is_the_mean(toy_data, tmp_path):
    _run(toy_data, tmp_path / "run", cfg=dataclasses.replace(FAST, max_updates=2, validate_every=1))
    steps = sorted((tmp_path / "run" / "checkpoints").iterdir())
    average_checkpoints(steps, tmp_path / "avg")
    a, b = (load_file(str(p / "model.safetensors")) for p in steps)
    avg = load_file(str(tmp_path / "avg" / "model.safetensors"))
    for k in a:
        assert torch.allclose(avg[k], (a[k] + b[k]) / 2, atol=1e-6)
    assert "averaged_from" in read_config(tmp_path / "avg")
    assert (
        main(["average", "--run", str(tmp_path / "run"), "--last", "2", "--out", str(tmp_path / "avg2")]) == 0
    )


def test_bad_options_give_clear_errors(toy_data, tmp_path, capsys):
    def fails(argv, message):
        assert main(argv) == 2
        assert message in capsys.readouterr().err

    base = ["train", "--data", str(toy_data), "--out", str(tmp_path / "run"), "--device", "cpu"]
    fails(base + ["--preset", "huge"], "unknown preset 'huge'")
    fails(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")], "is not a prepared data folder")
    fails(base + ["--preset", "tiny", "--model-option", "colour=3"], "--model-option 'colour=3'")
    with pytest.raises(SystemExit):  # argparse knows the choices: a usage error naming them
        main(base + ["--preset", "tiny", "--precision", "fp8"])
    assert "argument --precision: invalid choice: 'fp8' (choose from" in capsys.readouterr().err
    fails(base + ["--preset", "tiny", "--objective-option", "masking=random"], "masking='random'")
    fails(base + ["--preset", "tiny", "--precision", "fp16"], "needs a GPU")

    _run(toy_data, tmp_path / "run", cfg=dataclasses.replace(FAST, max_updates=1, validate_every=1))
    fails(base + ["--preset", "tiny"], "already holds a run")
    fails(base + ["--resume", "--max-tokens", "100"], "only max_updates")
    with pytest.raises(JanusError, match="does not match the checkpoint"):
        other = tmp_path / "other"
        other.mkdir()
        # the same data with a different vocabulary
        from janusgen.config import PrepareConfig
        from janusgen.data.prepare import prepare
        from janusgen.data.sources import TextFilesSource
        from tests.conftest import write_toy_corpus

        prepare(
            TextFilesSource(
                write_toy_corpus(other / "text", {"train": 200, "valid": 10, "test": 10}, seed=5), "es", "en"
            ),
            other / "data",
            PrepareConfig(vocab_size=50),
        )
        _run(other / "data", tmp_path / "run", resume=True)


def test_cli_trains_and_resumes(toy_data, tmp_path, capsys):
    argv = train_argv(
        str(toy_data),
        str(tmp_path / "run"),
        "--preset",
        "tiny",
        "--objective",
        "cmlm",
        "--max-updates",
        "2",
        "--validate-every",
        "2",
        "--max-tokens",
        "512",
        "--valid-bleu-sentences",
        "0",
        "--device",
        "cpu",
    )
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    assert (
        main(
            train_argv(
                str(toy_data),
                str(tmp_path / "run"),
                "--resume",
                "--max-updates",
                "3",
                "--device",
                "cpu",
            )
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3


def test_warmup_as_a_fraction_follows_progress():
    from janusgen.training.optim import inverse_sqrt_lr

    by_fraction = TrainConfig(lr=1e-3, warmup_init_lr=0.0, warmup_fraction=0.1)
    assert inverse_sqrt_lr(1, by_fraction, progress=0.05) == pytest.approx(5e-4)
    assert inverse_sqrt_lr(999, by_fraction, progress=0.1) == pytest.approx(1e-3)
    assert inverse_sqrt_lr(2, by_fraction, progress=0.4) == pytest.approx(5e-4)  # sqrt(0.1 / 0.4)
    by_updates = TrainConfig(lr=1e-3, warmup_init_lr=0.0, warmup_updates=10)
    assert inverse_sqrt_lr(5, by_updates, progress=0.9) == pytest.approx(5e-4)
    assert inverse_sqrt_lr(40, by_updates) == pytest.approx(5e-4)


def test_a_run_too_short_to_learn_says_so_and_records_the_precision(toy_data, tmp_path, capsys):
    cfg = dataclasses.replace(FAST, max_updates=12, warmup_updates=100, time_budget_s=3600.0)
    summary = train(
        toy_data, tmp_path / "run", model_preset("tiny"), objective_preset("ar"), cfg, device="cpu"
    )
    err = capsys.readouterr().err
    assert "janus: precision fp32: asked for with --precision" in err
    assert any("only 12 updates: too few to learn" in w for w in summary["warnings"])
    assert "too few to learn" in err
    config = read_config(tmp_path / "run" / "last")
    assert config["precision"]["precision"] == config["train"]["precision"] == "fp32"


@pytest.mark.parametrize("budget", [None, 3600.0], ids=["updates", "time-budget"])
def test_the_progress_bar_shows_updates_and_time_left(toy_data, tmp_path, capsys, budget):
    """The bar counts updates; a time-budgeted one follows the clock and names the update reached and the
    time left (never a rate of seconds per second)."""
    _run(toy_data, tmp_path / "run", cfg=dataclasses.replace(FAST, time_budget_s=budget))
    bar = capsys.readouterr().err.split("\r")[-1]
    if budget is None:
        assert "6/6 [" in bar and re.search(r" (upd/s|s/upd), ", bar)
    else:
        assert re.search(r"update 6, 00:0\d of 1:00:00, 59:[45]\d left", bar)
    assert "s/s" not in bar and "step=6" in bar


def test_fp16_with_loss_scaling_runs_on_the_cpu(toy_data, tmp_path, make_trainer):
    """The fp16 path (autocast + GradScaler: unscale before clipping, a skipped step on overflow, the
    scaler's state in the checkpoint) is a GPU path; the CPU's scaler runs the same code."""
    cfg = dataclasses.replace(FAST, precision="fp16", max_updates=4, validate_every=4)
    trainer = make_trainer(toy_data, tmp_path / "run", objective_preset("janus"), cfg)
    assert trainer.scaler is not None
    summary = trainer.fit()
    assert summary["step"] == 4
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert state["scaler"]["scale"] > 0
    losses = _train_losses(tmp_path / "run")
    assert all(math.isfinite(v) for v in losses.values())
