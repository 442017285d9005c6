import os
import subprocess
import sys

import numpy as np
import pytest

from janusgen.cli import main
from janusgen.config import SPECIAL_PIECE_COUNT, PrepareConfig
from janusgen.data import prepare as prepare_module
from janusgen.data.dataset import PairDataset, read_meta
from janusgen.data.prepare import format_prepare_report, prepare
from janusgen.data.sources import TextFilesSource, open_source
from janusgen.data.tokenizer import SPECIAL_PIECES, Tokenizer
from janusgen.errors import DataError, JanusError
from janusgen.fileio import remove_stale_temporaries, sha256_file, temporary_prefix


def _files(folder, meta=True):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if meta or p.name != "meta.json"}


def test_prepare_writes_arrays_tokenizer_and_meta(text_dir, tmp_path, small_config):
    meta = prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config())
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    expected = {
        f"{s}.{side}.{ext}"
        for s in ("train", "valid", "test")
        for side in ("src", "tgt")
        for ext in ("bin", "idx")
    }
    texts = {f"{s}.{side}.txt" for s in ("valid", "test") for side in ("src", "tgt")}
    assert names == expected | texts | {"spm.model", "meta.json"}
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left beside it

    on_disk = read_meta(out)
    assert {k: v for k, v in meta.items() if k != "run"} == on_disk
    assert set(meta["run"]) == {"out", "seconds"} and "run" not in on_disk
    assert on_disk["format_version"] == 1 and on_disk["dtype"] == "uint16" and on_disk["vocab_size"] == 80
    assert on_disk["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3, "mask": 4}
    assert on_disk["source"] == {
        "format": "text",
        "folder": str(text_dir.resolve()),
        "src": "es",
        "tgt": "en",
    }
    assert on_disk["config"]["vocab_size"] == 80 and on_disk["config"]["splits"] == ["train", "valid", "test"]
    assert on_disk["files"] == {name: sha256_file(out / name) for name in names - {"meta.json"}}
    train = on_disk["splits"]["train"]
    assert train["pairs"] == 300 and train["dropped_empty"] == 0
    lengths = np.diff(np.fromfile(out / "train.src.idx", dtype="<i8"))
    assert train["src_tokens"] == lengths.sum() and train["src_max_tokens"] == lengths.max()
    assert train["src_mean_tokens"] == round(lengths.mean(), 3)
    # the text of the kept pairs is kept, line for line, for every split but train
    dataset = PairDataset.open(out, "valid")
    src_text, tgt_text = dataset.texts()
    assert dataset.tokenizer.encode(tgt_text) == [list(dataset[i][1]) for i in range(len(dataset))]
    assert dataset.tokenizer.encode(src_text[:3]) == [list(dataset[i][0]) for i in range(3)]
    with pytest.raises(JanusError, match="every split but train"):
        PairDataset.open(out, "train").texts()
    assert set(train) == {
        "pairs",
        "dropped_empty",
        "src_tokens",
        "tgt_tokens",
        "src_mean_tokens",
        "tgt_mean_tokens",
        "src_max_tokens",
        "tgt_max_tokens",
    }


def test_empty_pairs_are_dropped_and_counted(tmp_path, pairs, write_text, small_config):
    train = list(pairs["train"])
    train[5] = ("", train[5][1])
    train[9] = (train[9][0], "   ")
    folder = write_text(tmp_path / "c", {**pairs, "train": train})
    meta = prepare(TextFilesSource(folder, "es", "en"), tmp_path / "out", small_config())
    assert meta["splits"]["train"]["pairs"] == 298 and meta["splits"]["train"]["dropped_empty"] == 2
    data = PairDataset.open(tmp_path / "out", "train")
    tok = data.tokenizer
    kept = [p for i, p in enumerate(train) if i not in (5, 9)]
    assert [a.tolist() for a, _ in (data[i] for i in range(len(data)))] == tok.encode([s for s, _ in kept])
    train_row = format_prepare_report(meta).splitlines()[3].split()
    assert train_row[:2] == ["train", "298"] and train_row[-1] == "2"


def test_reruns_and_chunk_sizes_give_identical_bytes(text_dir, tmp_path, small_config):
    source = TextFilesSource(text_dir, "es", "en")
    prepare(source, tmp_path / "a", small_config(chunk_lines=7))
    prepare(source, tmp_path / "b", small_config(chunk_lines=7))
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    # Chunk boundaries change nothing but the recorded config.
    prepare(source, tmp_path / "c", small_config(chunk_lines=10_000))
    a = _files(tmp_path / "a")
    assert _files(tmp_path / "c", meta=False) == _files(tmp_path / "a", meta=False)
    # Encoding threads change nothing either.
    prepare(source, tmp_path / "d", small_config(chunk_lines=7, num_threads=1))
    assert _files(tmp_path / "d")["train.tgt.bin"] == a["train.tgt.bin"]


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "hf"])
def test_every_format_prepares_the_same_arrays(
    tmp_path, pairs, fmt, write_text, write_tsv, write_jsonl, small_config
):
    prepare(
        open_source(text=write_text(tmp_path / "text", pairs), src="es", tgt="en"),
        tmp_path / "ref",
        small_config(),
    )
    if fmt == "tsv":
        source = open_source(tsv=write_tsv(tmp_path / "c", pairs), src="es", tgt="en")
    elif fmt == "jsonl":
        source = open_source(jsonl=write_jsonl(tmp_path / "c", pairs, nested=True), src="es", tgt="en")
    else:
        datasets = pytest.importorskip("datasets")
        tables = {
            ("validation" if split == "valid" else split): datasets.Dataset.from_dict(
                {"es": [s for s, _ in rows], "en": [t for _, t in rows]}
            )
            for split, rows in pairs.items()
        }
        datasets.DatasetDict(tables).save_to_disk(str(tmp_path / "hf"))
        source = open_source(hf_dataset=str(tmp_path / "hf"), src="es", tgt="en")
    meta = prepare(source, tmp_path / "out", small_config())
    assert _files(tmp_path / "out", meta=False) == _files(tmp_path / "ref", meta=False)
    assert meta["source"]["format"] == {"tsv": "tsv", "jsonl": "jsonl", "hf": "huggingface"}[fmt]


# ----------------------------------------------------------------------------------- failures


def test_missing_split_fails_before_any_work(text_dir, tmp_path, small_config, monkeypatch):
    (text_dir / "test.en").unlink()
    monkeypatch.setattr(Tokenizer, "train", lambda *a, **k: pytest.fail("trained before checking splits"))
    with pytest.raises(DataError, match=r"missing split 'test' \(expected .*test\.en\)"):
        prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config())
    assert not (tmp_path / "out").exists()
    with pytest.raises(JanusError, match="--splits must include train"):
        prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config(splits=("valid",)))


def test_killed_prepare_leaves_nothing_and_keeps_the_old_output(
    text_dir, tmp_path, small_config, monkeypatch
):
    source = TextFilesSource(text_dir, "es", "en")
    real_append = prepare_module.BinarizedWriter.append
    calls = []

    def dies_midway(self, seqs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # what a Ctrl-C (or a kill handled as one) looks like mid-write
        real_append(self, seqs)

    monkeypatch.setattr(prepare_module.BinarizedWriter, "append", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, tmp_path / "out", small_config(chunk_lines=50))
    assert list(tmp_path.iterdir()) == [text_dir]  # neither `out` nor a temporary folder

    monkeypatch.setattr(prepare_module.BinarizedWriter, "append", real_append)
    prepare(source, tmp_path / "out", small_config())
    good = _files(tmp_path / "out")
    calls.clear()
    monkeypatch.setattr(prepare_module.BinarizedWriter, "append", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, tmp_path / "out", small_config(vocab_size=70, chunk_lines=50), overwrite=True)
    assert _files(tmp_path / "out") == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "out"]


def test_bad_line_in_train_is_reported_and_leaves_nothing(text_dir, tmp_path, small_config):
    with open(text_dir / "train.en", "ab") as f:
        f.write(b"caf\xe9\n")
    with open(text_dir / "train.es", "a", encoding="utf-8") as f:
        f.write("café\n")
    with pytest.raises(DataError, match=r"train\.en:301: not valid UTF-8"):
        prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config())
    assert list(tmp_path.iterdir()) == [text_dir]


def test_train_without_usable_pairs(tmp_path, write_text, small_config):
    folder = write_text(tmp_path / "c", {"train": [("", "a"), ("b", "")]})
    with pytest.raises(DataError, match="train split has no pair with both sides non-empty"):
        prepare(TextFilesSource(folder, "es", "en"), tmp_path / "out", small_config(splits=("train",)))


def test_output_folder_checks(text_dir, tmp_path, small_config):
    source = TextFilesSource(text_dir, "es", "en")
    with pytest.raises(JanusError, match=r"output folder .*corpus is not empty and is not a prepared data"):
        prepare(source, text_dir, small_config())  # would have replaced the corpus itself
    (tmp_path / "file").write_text("x")
    with pytest.raises(JanusError, match=r"output .*file exists and is not a folder"):
        prepare(source, tmp_path / "file", small_config())
    with pytest.raises(JanusError, match=r"cannot write to output folder .*file/out"):
        prepare(source, tmp_path / "file" / "out", small_config())
    assert sorted(p.name for p in text_dir.iterdir())[:2] == ["test.en", "test.es"]


def test_rerun_is_refused_without_overwrite_and_never_deletes_foreign_files(
    text_dir, tmp_path, small_config, monkeypatch
):
    """A second prepare into a prepared folder needs --overwrite, and even then it
    refuses while the folder holds anything prepare did not write (replacing the folder deletes all)."""
    source, out = TextFilesSource(text_dir, "es", "en"), tmp_path / "out"
    (out).mkdir()
    prepare(source, out, small_config())  # an empty folder holds nothing to lose
    first = _files(out)
    monkeypatch.setattr(Tokenizer, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(JanusError, match=r"already holds prepared data; pass --overwrite"):
        prepare(source, out, small_config(vocab_size=70))
    (out / "notes.txt").write_text("mine")
    (out / ".hidden").mkdir()
    with pytest.raises(JanusError, match=r"holds 2 entries .* did not write \(\.hidden/, notes\.txt\)"):
        prepare(source, out, small_config(vocab_size=70), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / ".hidden").is_dir()
    (out / "notes.txt").unlink()
    (out / ".hidden").rmdir()
    assert _files(out) == first
    monkeypatch.undo()
    prepare(source, out, small_config(vocab_size=70), overwrite=True)
    assert read_meta(out)["vocab_size"] == 70
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "out"]


def test_files_added_while_prepare_runs_are_not_deleted(text_dir, tmp_path, small_config, monkeypatch):
    source, out = TextFilesSource(text_dir, "es", "en"), tmp_path / "out"
    prepare(source, out, small_config())
    real_binarize = prepare_module._binarize

    def user_adds_a_file(*args, **kwargs):
        (out / "added-meanwhile.txt").write_text("mine")
        return real_binarize(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "_binarize", user_adds_a_file)
    with pytest.raises(JanusError, match=r"did not write \(added-meanwhile\.txt\)"):
        prepare(source, out, small_config(vocab_size=70), overwrite=True)
    assert (out / "added-meanwhile.txt").read_text() == "mine" and read_meta(out)["vocab_size"] == 80


def test_stale_temporaries_of_killed_runs_are_removed(text_dir, tmp_path, small_config):
    """`.NAME.tmp-PID-*` / `.NAME.old-PID-*` folders whose process is gone are removed
    by the next write to NAME; a live process's, and names without a PID, are left alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [f".out.tmp-{dead.pid}-abcd1234", f".out.old-{dead.pid}-abcd1234"]
    kept = [f".out.tmp-{os.getppid()}-abcd1234", ".out.tmp-legacy99", f".other.tmp-{dead.pid}-x"]
    for name in stale + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "spm.model").write_text("half")
    # While `out` does not exist an old-* folder may hold the only complete copy: it stays.
    assert remove_stale_temporaries(tmp_path / "out") == [tmp_path / stale[0]]
    assert (tmp_path / stale[1]).is_dir()
    prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config())
    prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config(), overwrite=True)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"corpus", "out", *kept}
    assert temporary_prefix(tmp_path / "out", "tmp") == f".out.tmp-{os.getpid()}-"


def test_vocab_size_too_small_names_the_option(text_dir, tmp_path, small_config, capsys):
    assert len(SPECIAL_PIECES) == SPECIAL_PIECE_COUNT
    for size in (0, 3, 5):
        with pytest.raises(JanusError, match=rf"--vocab-size {size}: must be an integer of at least 6"):
            PrepareConfig(vocab_size=size)
    with pytest.raises(JanusError, match=r"--vocab-size 10 is too small for this training corpus: .*least"):
        prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config(vocab_size=10))
    argv = ["data", "prepare", "--text", str(text_dir), "--src", "es", "--tgt", "en", "--out"]
    assert main(argv + [str(tmp_path / "out"), "--vocab-size", "3"]) == 2
    assert capsys.readouterr().err == "janus: error: --vocab-size 3: must be an integer of at least 6\n"
    assert main(argv + [str(tmp_path / "out"), "--threads", "0"]) == 2
    assert "--threads 0: must be an integer between 1 and 1024" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------- CLI


def test_cli_prepare(text_dir, tmp_path, capsys):
    out = tmp_path / "data"
    argv = [
        "data",
        "prepare",
        "--text",
        str(text_dir),
        "--src",
        "es",
        "--tgt",
        "en",
        "--out",
        str(out),
        "--vocab-size",
        "80",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "vocabulary 80" in printed and "train" in printed and "300" in printed
    assert len(PairDataset.open(out, "valid")) == 30
    assert main(argv) == 2
    assert "already holds prepared data; pass --overwrite to replace it" in capsys.readouterr().err
    (out / "mine.txt").write_text("mine")
    assert main(argv + ["--overwrite"]) == 2
    assert "did not write (mine.txt); --overwrite would delete it" in capsys.readouterr().err
    (out / "mine.txt").unlink()
    assert main(argv + ["--overwrite"]) == 0
    capsys.readouterr()

    (text_dir / "test.es").unlink()
    assert main(argv + ["--splits", "train,test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("janus: error: missing split 'test'") and str(text_dir / "test.es") in err


def test_cli_bible_refuses_its_prepare_folder_before_building(text_dir, tmp_path, capsys, monkeypatch):
    import janusgen.data.bible as bible

    prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "data", PrepareConfig(vocab_size=80))
    monkeypatch.setattr(bible, "build_bible_corpus", lambda *a, **k: pytest.fail("built the corpus first"))
    argv = ["data", "bible", "--out", str(tmp_path / "bible"), "--prepare", str(tmp_path / "data")]
    assert main(argv) == 2
    assert "already holds prepared data; pass --overwrite" in capsys.readouterr().err
    (tmp_path / "data" / "mine.txt").write_text("mine")
    assert main(argv + ["--overwrite"]) == 2
    assert "did not write (mine.txt)" in capsys.readouterr().err
    assert main(argv + ["--vocab-size", "4"]) == 2
    assert "--vocab-size 4: must be an integer of at least 6" in capsys.readouterr().err


def test_report_without_run_information(text_dir, tmp_path, small_config):
    prepare(TextFilesSource(text_dir, "es", "en"), tmp_path / "out", small_config())
    report = format_prepare_report(read_meta(tmp_path / "out"))
    lines = report.splitlines()
    assert lines[0] == "prepared es->en"
    assert [line.split()[0] for line in lines[3:]] == ["train", "valid", "test"]
