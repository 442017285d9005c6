"""Config validation (RELIABILITY.md): every bad value is refused where the config is built, with
one message naming the option, from the command line and from a checkpoint's config.json alike."""

import dataclasses
import json

import pytest

from janusgen.cli import main
from janusgen.config import from_dict
from janusgen.errors import JanusError
from janusgen.model.config import ModelConfig
from janusgen.objective_config import ObjectiveConfig
from janusgen.presets import MODEL_PRESETS, OBJECTIVE_PRESETS, RECIPES, model_preset, objective_preset
from janusgen.training.config import TrainConfig

BAD_MODEL = [
    ({"d_model": -8}, "--model-option d_model=-8: must be >= 1"),
    ({"d_model": 0}, "d_model=0"),
    ({"d_model": 1_000_000}, "d_model=1000000: must be <= 16384"),
    ({"d_model": 256.5}, "d_model=256.5: must be an integer"),
    ({"d_model": "big"}, "d_model='big': must be an integer"),
    ({"heads": 3}, "--model-option heads=3: must divide d_model (256)"),
    ({"heads": 0}, "heads=0"),
    ({"ffn_dim": 0}, "ffn_dim=0"),
    ({"encoder_layers": 0}, "encoder_layers=0"),
    ({"decoder_layers": -1}, "decoder_layers=-1"),
    ({"dropout": 2}, "--model-option dropout=2: must be in [0, 1)"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"attention_dropout": -0.1}, "attention_dropout=-0.1"),
    ({"activation_dropout": float("nan")}, "activation_dropout=nan: must be a finite number"),
    ({"activation": "tanh"}, "--model-option activation='tanh': choose one of relu, gelu"),
    ({"pre_norm": "yes"}, "pre_norm='yes': must be true or false"),
    ({"max_positions": 2}, "max_positions=2"),
    ({"relative_positions": -1}, "relative_positions=-1"),
    ({"max_target_length": 0}, "max_target_length=0"),
    ({"vocab_size": 0}, "vocab_size=0"),
    ({"vocab_size": 4}, "mask_id=4: must be <= 3"),
    ({"bos_id": 0}, "bos_id=0: must differ from pad_id"),
    ({"d_model": 16384, "ffn_dim": 65536, "encoder_layers": 24, "decoder_layers": 24, "heads": 16}, "20B"),
    ({"length_predictor": "plain"}, "--model-option length_predictor='plain': choose one of ours, release"),
    ({"ar_query_position": 1}, "--model-option ar_query_position=1: choose one of next, same"),
    ({"decoder_start_id": 2}, "--model-option decoder_start_id=2: must not be BOS"),
    ({"decoder_start_id": 9000}, "decoder_start_id=9000: must be <= 7999"),
    ({"forced_bos": True}, "--model-option forced_bos=True: needs a decoder_start_id"),
]

BAD_OBJECTIVE = [
    ({"span_lambda": -1}, "--objective-option span_lambda=-1: must be in (0, 1000]"),
    ({"span_lambda": 0}, "span_lambda=0"),
    ({"kl_ar_aux": -5}, "--objective-option kl_ar_aux=-5: must be >= 0"),
    ({"ar_weight": float("inf")}, "ar_weight=inf: must be a finite number"),
    ({"nar_weight": -1}, "nar_weight=-1"),
    ({"length_weight": "x"}, "length_weight='x': must be a number"),
    ({"ar_weight": 0, "nar_weight": 0, "aux_weight": 0}, "nothing to train"),
    ({"label_smoothing": 1.0}, "label_smoothing=1.0: must be in [0, 1)"),
    ({"mask_ratio": 0}, "mask_ratio=0: must be in (0, 1]"),
    ({"mask_ratio": 1.5}, "mask_ratio=1.5"),
    ({"masking": "random"}, "masking='random': choose one of span, release, uniform"),
    ({"ar_only_updates": -1}, "ar_only_updates=-1: must be >= 0"),
    ({"kl_warmup_updates": -3}, "kl_warmup_updates=-3"),
    ({"ar_only_fraction": 1.5}, "ar_only_fraction=1.5"),
    ({"random_order": 1}, "random_order=1: must be true or false"),
    ({"kl_ar_detach": "sometimes"}, "kl_ar_detach='sometimes': choose one of never, always, until_close"),
    ({"kl_teacher_margin": -1.0}, "kl_teacher_margin"),
    ({"name": ""}, "name=''"),
]

BAD_TRAIN = [
    ({"lr": -1}, "--lr -1: must be > 0"),
    ({"lr": 0}, "--lr 0: must be > 0"),
    ({"lr": float("nan")}, "--lr nan: must be a finite number"),
    ({"max_updates": 0}, "--max-updates 0: must be >= 1"),
    ({"max_tokens": -5}, "--max-tokens -5"),
    ({"update_freq": 0}, "--update-freq 0"),
    ({"log_every": 0}, "--log-every 0"),
    ({"validate_every": 0}, "--validate-every 0"),
    ({"time_budget_s": -1.0}, "--time-budget -1.0: must be >= 0"),
    ({"warmup_updates": -1}, "--warmup -1: must be >= 0"),
    ({"weight_decay": -0.1}, "--weight-decay -0.1"),
    ({"clip_norm": float("inf")}, "--clip-norm inf"),
    ({"adam_beta1": 1.0}, "--adam-beta1 1.0: must be in [0, 1)"),
    ({"adam_eps": 0}, "--adam-eps 0: must be > 0"),
    ({"precision": "fp8"}, "--precision 'fp8': choose one of"),
    ({"best_metric": "bleu"}, "--best-metric 'bleu': choose one of loss"),
    ({"seed": -1}, "--seed -1: must be >= 0"),
    ({"valid_bleu_sentences": -1}, "--valid-bleu-sentences -1"),
    ({"keep_last": -1}, "--keep-last -1"),
]


@pytest.mark.parametrize(("change", "message"), BAD_MODEL, ids=[str(c) for c, _ in BAD_MODEL])
def test_bad_model_values_name_the_option(change, message):
    with pytest.raises(JanusError) as e:
        dataclasses.replace(model_preset("small"), **change)
    assert message in str(e.value)


@pytest.mark.parametrize(("change", "message"), BAD_OBJECTIVE, ids=[str(c) for c, _ in BAD_OBJECTIVE])
def test_bad_objective_values_name_the_option(change, message):
    with pytest.raises(JanusError) as e:
        dataclasses.replace(objective_preset("janus"), **change)
    assert message in str(e.value)


@pytest.mark.parametrize(("change", "message"), BAD_TRAIN, ids=[str(c) for c, _ in BAD_TRAIN])
def test_bad_train_values_name_the_option(change, message):
    with pytest.raises(JanusError) as e:
        TrainConfig(**change)
    assert message in str(e.value)


def test_presets_and_defaults_are_valid():
    for name in MODEL_PRESETS:
        model_preset(name)
    for name in OBJECTIVE_PRESETS:
        objective_preset(name)
    TrainConfig(time_budget_s=0.0, keep_last=0, clip_norm=0.0, warmup_updates=0)
    ObjectiveConfig(ar_only_updates=10, kl_warmup_updates=5)
    ModelConfig(activation="gelu", relative_positions=0, learned_positions=False)


def test_the_paper_recipe_is_the_release_iwslt_script():
    """warmup 10,000 (inverse sqrt, lr 5e-4, from 1e-7), Adam (0.9, 0.98), no clipping, 200,000 updates;
    the weight decay is ours (the release's is not established). TrainConfig's defaults stay ours."""
    model, objective = model_preset("paper-iwslt"), objective_preset("janus")
    m, o, train = RECIPES["paper"](model, objective)
    assert (m, o) == (model, objective)
    assert (train.lr, train.warmup_updates, train.warmup_fraction, train.warmup_init_lr) == (
        5e-4,
        10_000,
        None,
        1e-7,
    )
    assert (train.adam_beta1, train.adam_beta2, train.clip_norm, train.max_updates) == (
        0.9,
        0.98,
        0.0,
        200_000,
    )
    assert train.weight_decay == TrainConfig().weight_decay == 0.0001
    assert (
        dataclasses.replace(train, max_updates=100_000, warmup_updates=4000, clip_norm=1.0) == TrainConfig()
    )


def test_a_checkpoint_config_names_the_file_and_key():
    where = "run/last/config.json"
    with pytest.raises(JanusError, match=r"^run/last/config.json: model.d_model=1000000: must be <= 16384"):
        from_dict(ModelConfig, {"d_model": 1_000_000}, where=where)
    with pytest.raises(JanusError, match=r"^run/last/config.json: model.activation='tanh'"):
        from_dict(ModelConfig, {"activation": "tanh"}, where=where)
    with pytest.raises(JanusError, match=r"^run/last/config.json: objective.span_lambda=-1"):
        from_dict(ObjectiveConfig, {"span_lambda": -1}, where=where)
    with pytest.raises(JanusError, match=r"^run/last/config.json: train.lr=-1"):
        from_dict(TrainConfig, {"lr": -1}, where=where)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-option", "d_model=-8"], "--model-option d_model=-8: must be >= 1"),
        (["--model-option", "heads=3"], "--model-option heads=3: must divide d_model (32)"),
        (["--model-option", "dropout=2"], "--model-option dropout=2"),
        (["--model-option", "activation=tanh"], "--model-option activation='tanh'"),
        (["--lr", "-1"], "--lr -1.0: must be > 0"),
        (["--lr", "nan"], "--lr nan: must be a finite number"),
        (["--objective-option", "span_lambda=-1"], "--objective-option span_lambda=-1"),
        (["--objective-option", "kl_ar_aux=-5"], "--objective-option kl_ar_aux=-5"),
    ],
)
def test_the_cli_refuses_bad_values_before_training(toy_data, tmp_path, capsys, argv, message):
    base = ["train", "--data", str(toy_data), "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main([*base, "--preset", "tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_checkpoint_with_a_huge_model_is_refused_before_allocating(toy_data, tmp_path):
    import shutil

    from janusgen.checkpoint import CHECKSUMS_FILE, load_model
    from janusgen.training.recipe import train

    cfg = TrainConfig(
        max_updates=1, max_tokens=512, validate_every=1, valid_bleu_sentences=0, precision="fp32"
    )
    train(toy_data, tmp_path / "run", model_preset("tiny"), objective_preset("ar"), cfg, device="cpu")
    bad = shutil.copytree(tmp_path / "run" / "last", tmp_path / "ckpt")
    (bad / CHECKSUMS_FILE).unlink()  # as an older checkpoint: nothing to verify, the config itself is checked
    config = json.loads((bad / "config.json").read_text())
    config["model"]["d_model"] = 1_000_000
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(JanusError, match=r"ckpt/config.json: model.d_model=1000000: must be <= 16384"):
        load_model(bad)
