import json
import shutil

import numpy as np
import pytest

from janusgen.data.binarized import BinarizedArray, BinarizedWriter, dtype_for_vocab
from janusgen.data.dataset import PairDataset, read_meta
from janusgen.data.prepare import prepare
from janusgen.data.sources import TextFilesSource
from janusgen.errors import DataError, JanusError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, pairs, write_text, small_config):
    root = tmp_path_factory.mktemp("prepared")
    prepare(TextFilesSource(write_text(root / "corpus", pairs), "es", "en"), root / "data", small_config())
    return root / "data"


@pytest.fixture
def copy_of(data_dir, tmp_path):
    """A disposable copy of the prepared folder, to damage."""
    return shutil.copytree(data_dir, tmp_path / "data")


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_round_trip_matches_direct_encoding(data_dir, pairs, split):
    data = PairDataset.open(data_dir, split)
    tok = data.tokenizer
    assert len(data) == len(pairs[split])
    src_ids = tok.encode([s for s, _ in pairs[split]])
    tgt_ids = tok.encode([t for _, t in pairs[split]])
    for i in range(len(data)):
        src, tgt = data[i]
        assert src.tolist() == src_ids[i] and tgt.tolist() == tgt_ids[i]  # no bos / eos added
    assert data.src_lengths.dtype == np.int64 and data.tgt_lengths.dtype == np.int64
    assert data.src_lengths.tolist() == [len(x) for x in src_ids]
    assert data.tgt_lengths.tolist() == [len(x) for x in tgt_ids]
    assert data.meta["splits"][split]["pairs"] == len(data)
    assert tok.decode([data[0][1].tolist()]) == [pairs[split][0][1]]


def test_filter_by_length_counts_instead_of_truncating(data_dir):
    data = PairDataset.open(data_dir, "train")
    max_src, max_tgt = int(np.median(data.src_lengths)), int(np.median(data.tgt_lengths))
    keep, dropped = data.filter_by_length(max_src, max_tgt)
    fits = [i for i in range(len(data)) if len(data[i][0]) <= max_src and len(data[i][1]) <= max_tgt]
    assert keep.dtype == np.int64 and keep.tolist() == fits
    assert dropped == len(data) - len(fits) > 0
    everything, none = data.filter_by_length(10_000, 10_000)
    assert len(everything) == len(data) and none == 0


# ---------------------------------------------------------------------------------------- errors


def test_missing_folder_and_meta(tmp_path):
    with pytest.raises(JanusError, match=r"data folder .*nowhere does not exist.*janus data prepare"):
        PairDataset.open(tmp_path / "nowhere", "train")
    with pytest.raises(JanusError, match=r"prepared data folder: it has no meta\.json.*janus data prepare"):
        PairDataset.open(tmp_path, "train")


def test_unknown_version_missing_keys_and_bad_json(copy_of):
    meta = json.loads((copy_of / "meta.json").read_text())
    (copy_of / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(JanusError, match=r"meta\.json: format_version 99 is not supported"):
        read_meta(copy_of)
    (copy_of / "meta.json").write_text(json.dumps({"format_version": 1, "splits": {}}))
    with pytest.raises(JanusError, match=r"missing src, tgt, vocab_size, dtype, tokenizer"):
        read_meta(copy_of)
    (copy_of / "meta.json").write_text("[1, 2]")
    with pytest.raises(JanusError, match=r"not a janusgen data description \(missing format_version"):
        read_meta(copy_of)
    (copy_of / "meta.json").write_text("{oops")
    with pytest.raises(JanusError, match=r"meta\.json:1: not valid JSON"):
        read_meta(copy_of)


def test_tokenizer_must_be_a_file_inside_the_folder(copy_of, tmp_path):
    """meta.json may not (RELIABILITY.md) point the tokenizer at a file outside the folder."""
    meta = json.loads((copy_of / "meta.json").read_text())
    outside = tmp_path / "elsewhere.model"
    shutil.copy(copy_of / "spm.model", outside)
    (copy_of / "link.model").symlink_to(outside)
    for name in (str(outside), "../elsewhere.model", "link.model", "", ".", None):
        (copy_of / "meta.json").write_text(json.dumps({**meta, "tokenizer": name}))
        with pytest.raises(JanusError, match=r"meta\.json: tokenizer .* is not a file inside"):
            PairDataset.open(copy_of, "train")
    (copy_of / "meta.json").write_text(json.dumps({**meta, "tokenizer": "gone.model"}))
    with pytest.raises(JanusError, match=r"tokenizer 'gone\.model' does not exist in"):
        read_meta(copy_of)
    (copy_of / "meta.json").write_text(json.dumps(meta))
    assert PairDataset.open(copy_of, "train").tokenizer.vocab_size == meta["vocab_size"]


def test_missing_split(data_dir):
    with pytest.raises(JanusError, match=r"has no split 'dev' \(it has: test, train, valid\)"):
        PairDataset.open(data_dir, "dev")


def test_damaged_arrays(copy_of):
    bin_file = copy_of / "valid.tgt.bin"
    bin_file.write_bytes(bin_file.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"valid\.tgt\.bin does not match .*valid\.tgt\.idx"):
        PairDataset.open(copy_of, "valid")
    (copy_of / "test.src.idx").write_bytes(b"\x00" * 12)
    with pytest.raises(DataError, match=r"test\.src\.idx is truncated or corrupt"):
        PairDataset.open(copy_of, "test")
    (copy_of / "train.src.idx").unlink()
    with pytest.raises(DataError, match=r"missing file .*train\.src\.idx"):
        PairDataset.open(copy_of, "train")


def test_pair_count_must_match_meta(copy_of):
    meta = json.loads((copy_of / "meta.json").read_text())
    meta["splits"]["valid"]["pairs"] = 31
    (copy_of / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"30 source and 30 target sequences but meta\.json says 31"):
        PairDataset.open(copy_of, "valid")


# ------------------------------------------------------------------------------- binarized arrays


def test_dtype_choice():
    assert dtype_for_vocab(8000) == "uint16" and dtype_for_vocab(65535) == "uint16"
    assert dtype_for_vocab(65536) == "int32" and dtype_for_vocab(250_000) == "int32"


@pytest.mark.parametrize("dtype", ["uint16", "int32"])
def test_writer_chunks_and_reader(tmp_path, dtype):
    rng = np.random.default_rng(0)
    top = 65_535 if dtype == "uint16" else 250_000
    seqs = [rng.integers(0, top, rng.integers(0, 9)).tolist() for _ in range(50)]
    for name, chunk in (("one", 50), ("small", 3), ("single", 1)):
        with BinarizedWriter(tmp_path / name, dtype) as writer:
            for start in range(0, len(seqs), chunk):
                writer.append(seqs[start : start + chunk])
            lengths = writer.finish()
        assert lengths.tolist() == [len(s) for s in seqs]
    with BinarizedWriter(tmp_path / "flat", dtype) as writer:  # sequences given back to back
        writer.append_flat(np.array([t for s in seqs[:20] for t in s]), [len(s) for s in seqs[:20]])
        writer.append_flat(np.array([t for s in seqs[20:] for t in s]), [len(s) for s in seqs[20:]])
        with pytest.raises(ValueError, match="lengths sum to 3 but 2 tokens"):
            writer.append_flat(np.array([1, 2]), [1, 2])
        writer.finish()
    for suffix in (".bin", ".idx"):
        names = ("one", "small", "single", "flat")
        written = {(tmp_path / f"{name}{suffix}").read_bytes() for name in names}
        assert len(written) == 1
    array = BinarizedArray(tmp_path / "small", dtype)
    assert len(array) == 50 and array.lengths.dtype == np.int64
    assert [array[i].tolist() for i in range(50)] == seqs
    assert array[-1].tolist() == seqs[-1]
    with pytest.raises(IndexError, match="out of range"):
        array[50]
    picked = np.array([7, 0, 49, 7, 23])
    flat, lengths = array.gather(picked)
    assert lengths.dtype == np.int64 and lengths.tolist() == [len(seqs[i]) for i in picked]
    assert flat.tolist() == [t for i in picked for t in seqs[i]]
    assert [x.tolist() for x in array.gather(np.array([], dtype=np.int64))] == [[], []]
    with pytest.raises(IndexError, match="out of range"):
        array.gather(np.array([3, 50]))


def test_empty_array(tmp_path):
    with BinarizedWriter(tmp_path / "none", "uint16") as writer:
        writer.append([])
        writer.finish()
    array = BinarizedArray(tmp_path / "none", "uint16")
    assert len(array) == 0 and array.lengths.tolist() == []
    with BinarizedWriter(tmp_path / "blank", "uint16") as writer:
        writer.append([[], []])
        writer.finish()
    array = BinarizedArray(tmp_path / "blank", "uint16")  # offsets but no token bytes: nothing to map
    assert len(array) == 2 and array[1].tolist() == []


# ------------------------------------------------------------------- meta.json read back


def _edit_meta(folder, change) -> None:
    path = folder / "meta.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def test_non_utf8_bytes_in_meta_json_name_the_file(copy_of):
    """Bytes that are not UTF-8 in meta.json name the file."""
    path = copy_of / "meta.json"
    path.write_bytes(path.read_bytes().replace(b"{", b'{"x": "\xff",', 1))
    with pytest.raises(JanusError, match=r"meta\.json: not UTF-8 text"):
        PairDataset.open(copy_of, "train")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: {**m, "dtype": "float64"}, r'dtype must be one of "uint16", "int32" \(found "float64"\)'),
        (lambda m: {**m, "splits": "train"}, r'splits must be an object \(found "train"\)'),
        (
            lambda m: {**m, "splits": {**m["splits"], "train": {}}},
            r"missing key\(s\) in splits\.train: pairs",
        ),
        (lambda m: {**m, "distillation": "yes"}, r'distillation must be an object \(found "yes"\)'),
        (lambda m: {**m, "vocab_size": "80"}, r'vocab_size must be an integer >= 1 \(found "80"\)'),
        (lambda m: {**m, "files": ["train.src.bin"]}, r"files must be an object"),
    ],
    ids=["dtype", "splits-a-string", "split-without-pairs", "distillation-a-string", "vocab", "files"],
)
def test_a_malformed_meta_json_is_one_error_naming_the_key(copy_of, change, message):
    """every value meta.json must hold is checked when it is read, not used half-checked."""
    _edit_meta(copy_of, change)
    with pytest.raises(JanusError, match=rf"meta\.json: {message}"):
        PairDataset.open(copy_of, "train")


def test_every_name_in_meta_json_must_be_a_file_inside_the_folder(copy_of, tmp_path):
    """`files` (which `janus distill` copies) and `distillation.references` (whose arrays
    training reads) are checked like the tokenizer: never a file elsewhere on disk."""
    (tmp_path / "payload.txt").write_text("not yours\n")
    for name in ("../payload.txt", str(tmp_path / "payload.txt")):
        _edit_meta(copy_of, lambda m, name=name: {**m, "files": {**m["files"], name: "0" * 64}})
        with pytest.raises(JanusError, match=r"meta\.json: files .*payload\.txt' is not a file inside"):
            read_meta(copy_of)
        _edit_meta(
            copy_of, lambda m: {**m, "files": {k: v for k, v in m["files"].items() if "payload" not in k}}
        )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for suffix in (".bin", ".idx"):
        shutil.copy(copy_of / f"train.tgt{suffix}", elsewhere / f"refs{suffix}")
    for kept in (str(elsewhere / "refs"), "../elsewhere/refs"):
        _edit_meta(copy_of, lambda m, kept=kept: {**m, "distillation": {"references": kept}})
        with pytest.raises(JanusError, match=r"meta\.json: distillation\.references .* is not a file inside"):
            PairDataset.open(copy_of, "train")
