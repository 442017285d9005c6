"""`janus distill`: a prepared dataset of the teacher's outputs, byte-identical across runs, resumable."""

import dataclasses
import filecmp
import json
import shutil

import pytest

import janusgen.distill as distill_module
from janusgen.cli import main
from janusgen.config import DecodeConfig, DistillConfig
from janusgen.data.dataset import PairDataset
from janusgen.distill import REFERENCES, distill, partial_dir
from janusgen.errors import JanusError
from janusgen.presets import model_preset, objective_preset
from janusgen.training.config import TrainConfig

CFG = DistillConfig(decode=DecodeConfig(beam=2), shard_pairs=128, dtype="float32")


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_distilled_data_is_a_prepared_folder_that_keeps_the_references(toy_data, toy_checkpoint, tmp_path):
    out = tmp_path / "distilled"
    meta = distill(toy_checkpoint, toy_data, out, CFG)
    assert not partial_dir(out).exists()
    train = PairDataset.open(out, "train")
    train.verify()  # checksums of every file, token ids within the vocabulary
    original = PairDataset.open(toy_data, "train")
    assert len(train) == len(original) and train.references is not None
    # sources, valid and test unchanged; the original targets kept as train.ref.tgt
    for name in (
        "train.src.bin",
        "train.src.idx",
        "valid.tgt.txt",
        "test.src.txt",
        "test.tgt.bin",
        "spm.model",
    ):
        assert filecmp.cmp(toy_data / name, out / name, shallow=False), name
    for suffix in (".bin", ".idx"):
        assert filecmp.cmp(toy_data / f"train.tgt{suffix}", out / f"{REFERENCES}{suffix}", shallow=False)
    # the targets are the teacher's: they differ from the references, and none is empty
    assert (train.tgt_lengths > 0).all()
    differ = sum(train.tgt[i].tolist() != original.tgt[i].tolist() for i in range(len(train)))
    assert differ > 0  # a few-second toy teacher is not perfect
    assert meta["distillation"]["options"]["decode"]["beam"] == 2
    assert json.loads((out / "meta.json").read_text())["distillation"]["references"] == REFERENCES


def test_each_pair_gets_the_teachers_output_for_its_own_source(
    toy_data, toy_checkpoint, tmp_path, monkeypatch
):
    """The shards follow source length, not pair order: assembling must put every output back at its pair,
    and a pair whose output is empty keeps its reference."""
    from janusgen.decoding.translator import Translator

    def teacher(self, sources, decode):  # a stand-in whose output says which source it came from
        return [([] if len(s) % 3 == 0 else [int(t) for t in s[::-1]], 0.0) for s in sources]

    monkeypatch.setattr(Translator, "decode_ids", teacher)
    meta = distill(toy_checkpoint, toy_data, tmp_path / "out", CFG)
    distilled, original = PairDataset.open(tmp_path / "out", "train"), PairDataset.open(toy_data, "train")
    empty = 0
    for i in range(len(original)):
        source = original.src[i].tolist()
        if len(source) % 3 == 0:
            empty += 1
            assert distilled.tgt[i].tolist() == original.tgt[i].tolist(), i
        else:
            assert distilled.tgt[i].tolist() == source[::-1], i
    assert 0 < empty < len(original)
    assert meta["distillation"]["empty_outputs_kept_as_reference"] == empty


def test_two_distillations_are_byte_identical_and_a_killed_one_resumes(
    toy_data, toy_checkpoint, tmp_path, monkeypatch
):
    first, second = tmp_path / "a", tmp_path / "b"
    distill(toy_checkpoint, toy_data, first, CFG)

    written = []
    real_write = distill_module._write_shard

    def dies_after_two(prefix, outputs, dtype):
        if len(written) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill between shards
        real_write(prefix, outputs, dtype)
        written.append(prefix)

    monkeypatch.setattr(distill_module, "_write_shard", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        distill(toy_checkpoint, toy_data, second, CFG)
    assert not second.exists()
    assert len(list(partial_dir(second).glob("shard_*.idx"))) == 2
    # a shard cut short by the kill (a .tmp left behind) is redone, not read
    (partial_dir(second) / "shard_00002.tmp.bin").write_bytes(b"\0\0")

    resumed = []
    monkeypatch.setattr(
        distill_module, "_write_shard", lambda p, o, d: (resumed.append(p), real_write(p, o, d))
    )
    distill(toy_checkpoint, toy_data, second, CFG)
    assert len(resumed) == -(-600 // 128) - 2  # only the missing shards were translated
    assert _files(first) == _files(second)
    for name in _files(first):
        assert filecmp.cmp(first / name, second / name, shallow=False), name


def test_distill_refuses_what_would_be_wrong(toy_data, toy_checkpoint, tmp_path, resign):
    # a teacher without an AR view
    cmlm = tmp_path / "cmlm"
    shutil.copytree(toy_checkpoint, cmlm)
    config = json.loads((cmlm / "config.json").read_text())
    config["objective"] = {**config["objective"], "name": "cmlm", "ar_weight": 0.0}
    (cmlm / "config.json").write_text(json.dumps(config))
    resign(cmlm)
    with pytest.raises(JanusError, match="trains no AR view"):
        distill(cmlm, toy_data, tmp_path / "x", CFG)
    # a teacher with another vocabulary
    other = tmp_path / "other"
    shutil.copytree(toy_checkpoint, other)
    (other / "spm.model").write_bytes((other / "spm.model").read_bytes() + b"x")
    with pytest.raises(JanusError, match="another vocabulary"):
        distill(other, toy_data, tmp_path / "x", CFG)
    # shards left by a run with other options are never mixed in
    out = tmp_path / "y"
    partial_dir(out).mkdir()
    (partial_dir(out) / "plan.json").write_text(json.dumps({"teacher": "someone else"}))
    with pytest.raises(JanusError, match="another teacher, data or options"):
        distill(toy_checkpoint, toy_data, out, CFG)
    # an existing prepared folder is replaced only with --overwrite
    with pytest.raises(JanusError, match="--overwrite"):
        distill(toy_checkpoint, toy_data, toy_data, CFG)
    # bad options name the flag
    with pytest.raises(JanusError, match="--beam"):
        DistillConfig(decode=DecodeConfig(beam=0))
    with pytest.raises(JanusError, match="AR view"):
        DistillConfig(decode=DecodeConfig(mode="nar"))
    with pytest.raises(JanusError, match="--shard-pairs"):
        DistillConfig(shard_pairs=0)


def test_training_on_distilled_data_with_the_ar_view_on_the_references(
    toy_data, toy_checkpoint, tmp_path, capsys
):
    from janusgen.training.recipe import train

    out = tmp_path / "distilled"
    assert (
        main(
            [
                "distill",
                "--checkpoint",
                str(toy_checkpoint),
                "--data",
                str(toy_data),
                "--out",
                str(out),
                "--beam",
                "1",
                "--shard-pairs",
                "256",
                "--dtype",
                "float32",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "distilled 600 training pairs" in capsys.readouterr().out
    model = model_preset("tiny")
    no_ar_kl = objective_preset("janus").__class__(kl_ar_nar=0.0, kl_ar_aux=0.0)
    cfg = TrainConfig(
        max_updates=3,
        max_tokens=512,
        warmup_updates=1,
        validate_every=3,
        valid_bleu_sentences=0,
        precision="fp32",
        ar_targets="references",
    )
    summary = train(out, tmp_path / "run", model, no_ar_kl, cfg, device="cpu")
    assert summary["step"] == 3
    with pytest.raises(JanusError, match="kl_ar_nar=0"):
        train(out, tmp_path / "run2", model, objective_preset("janus"), cfg, device="cpu")
    with pytest.raises(JanusError, match="keeps no original references"):
        train(toy_data, tmp_path / "run3", model, no_ar_kl, cfg, device="cpu")


def test_a_run_goes_on_from_its_ar_only_phase_on_data_its_own_ar_view_distilled(toy_data, tmp_path, capsys):
    """Self-distillation in one run (README): pause at the end of the AR-only half, distil with that
    checkpoint, `--resume` on the distilled data with the AR view kept on the references."""
    from janusgen.checkpoint import STATE_JSON, read_config

    run = tmp_path / "run"
    start = ["train", "--data", str(toy_data), "--out", str(run), "--recipe", "cpu", "--preset", "tiny"]
    small = ["--max-tokens", "512", "--valid-bleu-sentences", "0", "--precision", "fp32", "--device", "cpu"]
    assert main([*start, *small, "--max-updates", "4", "--stop-at", "2"]) == 0
    assert json.loads((run / "last" / STATE_JSON).read_text())["step"] == 2
    distilled = tmp_path / "distilled"
    distill(run / "last", toy_data, distilled, dataclasses.replace(CFG, decode=DecodeConfig(beam=1)))

    resume = ["train", "--resume", "--out", str(run), "--device", "cpu"]
    assert main([*resume, "--data", str(toy_data), "--ar-targets", "references"]) != 0
    assert "keeps no original references" in capsys.readouterr().err
    assert main([*resume, "--data", str(distilled), "--ar-targets", "references"]) == 0
    config = read_config(run / "last")
    assert json.loads((run / "last" / STATE_JSON).read_text())["step"] == 4
    assert config["train"]["ar_targets"] == "references"
    assert config["data"]["dir"] == str(distilled.resolve())


def test_a_meta_json_naming_files_outside_its_folder_never_makes_distill_write_elsewhere(
    toy_data, toy_checkpoint, tmp_path, capsys
):
    """`files` naming "../payload.txt" made distill copy that file over the user's own
    file beside the output folder (exit 0)."""
    data = shutil.copytree(toy_data, tmp_path / "data")
    (tmp_path / "payload.txt").write_text("planted\n")
    users = tmp_path / "out" / "payload.txt"
    users.parent.mkdir()
    users.write_text("the user's own file\n")
    meta = json.loads((data / "meta.json").read_text())
    meta["files"]["../payload.txt"] = "0" * 64
    (data / "meta.json").write_text(json.dumps(meta))
    argv = ["distill", "--checkpoint", str(toy_checkpoint), "--data", str(data), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "out" / "distilled"), "--beam", "1"]) == 2
    err = capsys.readouterr().err
    assert "meta.json: files '../payload.txt' is not a file inside" in err and "Traceback" not in err
    assert users.read_text() == "the user's own file\n"
    assert sorted(p.name for p in users.parent.iterdir()) == ["payload.txt"]
