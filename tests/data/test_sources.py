import sys
from pathlib import Path

import pytest

from janusgen.data.sources import (
    HuggingFaceSource,
    JsonlSource,
    TextFilesSource,
    TsvSource,
    normalize,
    open_source,
)
from janusgen.errors import DataError, JanusError

SRC, TGT = "es", "en"
SMALL = {"train": [("uno dos", "one two"), ("tres", "three")], "valid": [("cuatro", "four")]}


def _hf_folder(tmp_path: Path, nested: bool, validation_name: str = "validation") -> Path:
    datasets = pytest.importorskip("datasets")

    def table(pairs):
        if nested:
            return datasets.Dataset.from_dict({"translation": [{SRC: s, TGT: t} for s, t in pairs]})
        return datasets.Dataset.from_dict({TGT: [t for _, t in pairs], SRC: [s for s, _ in pairs]})

    folder = tmp_path / "hf"
    splits = {"train": table(SMALL["train"]), validation_name: table(SMALL["valid"])}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


# ------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("fmt", ["text", "tsv", "jsonl", "jsonl-nested", "hf", "hf-nested", "hf-valid"])
def test_every_format_streams_the_same_pairs(tmp_path, fmt, write_text, write_tsv, write_jsonl):
    if fmt == "text":
        source = open_source(text=write_text(tmp_path / "c", SMALL), src=SRC, tgt=TGT)
    elif fmt == "tsv":
        source = open_source(tsv=write_tsv(tmp_path / "c", SMALL), src=SRC, tgt=TGT)
    elif fmt.startswith("jsonl"):
        folder = write_jsonl(tmp_path / "c", SMALL, nested=fmt == "jsonl-nested")
        source = open_source(jsonl=folder, src=SRC, tgt=TGT)
    else:
        validation = "valid" if fmt == "hf-valid" else "validation"
        folder = _hf_folder(tmp_path, nested=fmt == "hf-nested", validation_name=validation)
        source = open_source(hf_dataset=str(folder), src=SRC, tgt=TGT)
    for split, expected in SMALL.items():
        assert source.has_split(split)
        assert list(source.pairs(split)) == expected
    assert not source.has_split("test")
    described = source.describe()
    assert described["src"] == SRC and described["tgt"] == TGT


def test_types_and_describe(tmp_path, write_text, write_tsv, write_jsonl):
    folder = write_text(tmp_path / "c", SMALL)
    assert isinstance(open_source(text=folder, src=SRC, tgt=TGT), TextFilesSource)
    assert isinstance(open_source(tsv=write_tsv(tmp_path / "t", SMALL), src=SRC, tgt=TGT), TsvSource)
    assert isinstance(open_source(jsonl=write_jsonl(tmp_path / "j", SMALL), src=SRC, tgt=TGT), JsonlSource)
    assert open_source(text=folder, src=SRC, tgt=TGT).describe() == {
        "format": "text",
        "folder": str(folder.resolve()),
        "src": SRC,
        "tgt": TGT,
    }


def test_normalisation_line_endings_whitespace_and_bom(tmp_path):
    (tmp_path / "train.es").write_bytes("\ufeffhola  mundo\r\n\tadiós \r\n\n".encode())
    (tmp_path / "train.en").write_bytes(b"hello world\r\nbye\r\nlonely\n")
    pairs = list(TextFilesSource(tmp_path, "es", "en").pairs("train"))
    # An empty side is still a pair: prepare drops and counts it.
    assert pairs == [("hola mundo", "hello world"), ("adiós", "bye"), ("", "lonely")]
    assert normalize(" a\u00a0 b\t\n") == "a b"


def test_streaming_reads_lazily(tmp_path, write_text):
    big = [(f"s {i}", f"t {i}") for i in range(1000)]
    source = TextFilesSource(write_text(tmp_path, {"train": big}), SRC, TGT)
    stream = source.pairs("train")
    assert next(stream) == ("s 0", "t 0")  # a generator: nothing beyond the first line is needed yet


def test_empty_sides_and_null_values(tmp_path):
    (tmp_path / "train.tsv").write_text("a\t\n\tb\nc\td\n", encoding="utf-8")
    assert list(TsvSource(tmp_path, SRC, TGT).pairs("train")) == [("a", ""), ("", "b"), ("c", "d")]
    (tmp_path / "train.jsonl").write_text('{"es": null, "en": "x"}\n', encoding="utf-8")
    assert list(JsonlSource(tmp_path, SRC, TGT).pairs("train")) == [("", "x")]


# --------------------------------------------------------------------------------------- bad input


def test_line_count_mismatch_names_both_files_and_line(tmp_path):
    (tmp_path / "train.es").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("x\ny\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(TextFilesSource(tmp_path, "es", "en").pairs("train"))
    msg = str(e.value)
    assert "train.es" in msg and "train.en" in msg and "after line 2" in msg and "line 3" in msg
    (tmp_path / "train.es").write_text("a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.es ends after line 1 .*train\.en has a line 2"):
        list(TextFilesSource(tmp_path, "es", "en").pairs("train"))


def test_non_utf8_names_file_line_and_offset(tmp_path):
    (tmp_path / "train.es").write_bytes(b"ok\nbad \xff byte\n")
    (tmp_path / "train.en").write_bytes(b"ok\nfine\n")
    with pytest.raises(DataError) as e:
        list(TextFilesSource(tmp_path, "es", "en").pairs("train"))
    msg = str(e.value)
    assert "train.es:2" in msg and "0xff" in msg and "byte offset 7" in msg and "4 within the line" in msg


def test_empty_file(tmp_path):
    (tmp_path / "train.es").write_bytes(b"")
    (tmp_path / "train.en").write_bytes(b"x\n")
    with pytest.raises(DataError, match=r"train\.es is empty"):
        list(TextFilesSource(tmp_path, "es", "en").pairs("train"))


@pytest.mark.parametrize("fmt", ["text", "tsv", "jsonl"])
def test_missing_split_names_expected_files(tmp_path, fmt, write_text, write_tsv, write_jsonl):
    writer = {"text": write_text, "tsv": write_tsv, "jsonl": write_jsonl}[fmt]
    source = open_source(**{fmt: writer(tmp_path / "c", SMALL)}, src=SRC, tgt=TGT)
    expected = {"text": "test.es", "tsv": "test.tsv", "jsonl": "test.jsonl"}[fmt]
    with pytest.raises(DataError, match=rf"split 'test' \(expected .*{expected}"):
        source.require_splits(["train", "test"])
    with pytest.raises(DataError, match=expected):
        list(source.pairs("test"))


def test_missing_one_side_names_only_that_file(tmp_path, write_text):
    write_text(tmp_path, SMALL)
    (tmp_path / "valid.en").unlink()
    with pytest.raises(DataError) as e:
        TextFilesSource(tmp_path, SRC, TGT).require_splits(["valid"])
    assert "valid.en" in str(e.value) and "valid.es" not in str(e.value)


@pytest.mark.parametrize("line", ["one column", "a\tb\tc"])
def test_tsv_column_count(tmp_path, line):
    (tmp_path / "train.tsv").write_text(f"x\ty\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.tsv:2: expected 2 tab-separated columns"):
        list(TsvSource(tmp_path, SRC, TGT).pairs("train"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"es": "a"}', "no field 'en'"),
        ('{"translation": {"en": "a"}}', "no field 'es'"),
        ('{"es": "a", "en": 3}', "field 'en' is int, not a string"),
        ('["a", "b"]', "expected a JSON object, found list"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # was a RecursionError
        ('{"es": ' + "[" * 100_000 + "]" * 100_000 + ', "en": "b"}', "nested too deeply"),
    ],
    ids=["not-json", "no-en", "no-es", "not-a-string", "a-list", "nested", "nested-field"],
)
def test_jsonl_bad_lines(tmp_path, line, message):
    (tmp_path / "train.jsonl").write_text('{"es": "a", "en": "b"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl:2: ") as e:
        list(JsonlSource(tmp_path, SRC, TGT).pairs("train"))
    assert message in str(e.value)


def test_missing_folder_and_source_choice(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        open_source(text=tmp_path / "nowhere", src=SRC, tgt=TGT)
    with pytest.raises(JanusError, match="exactly one"):
        open_source(src=SRC, tgt=TGT)
    with pytest.raises(JanusError, match="exactly one"):
        open_source(text=tmp_path, tsv=tmp_path, src=SRC, tgt=TGT)
    with pytest.raises(JanusError, match="--hf-config"):
        open_source(text=tmp_path, hf_config="de-en", src=SRC, tgt=TGT)


# ------------------------------------------------------------------------------------ Hugging Face


def test_hf_missing_split_columns_and_rows(tmp_path):
    datasets = pytest.importorskip("datasets")
    source = open_source(hf_dataset=str(_hf_folder(tmp_path, nested=False)), src=SRC, tgt=TGT)
    with pytest.raises(DataError, match=r"split 'test' in Hugging Face dataset .*it has: train, validation"):
        source.require_splits(["train", "test"])
    with pytest.raises(DataError, match="no columns 'de' and 'en'"):
        list(open_source(hf_dataset=str(tmp_path / "hf"), src="de", tgt=TGT).pairs("train"))

    # Arrow fills a key missing from a struct row with null: an empty side, dropped and counted later.
    gaps = tmp_path / "gaps"
    rows = [{SRC: "a", TGT: "b"}, {SRC: "c"}]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"translation": rows})}).save_to_disk(str(gaps))
    assert list(open_source(hf_dataset=str(gaps), src=SRC, tgt=TGT).pairs("train")) == [("a", "b"), ("c", "")]

    bad = tmp_path / "bad"
    numbers = datasets.Dataset.from_dict({SRC: ["a", "b"], TGT: [1, 2]})
    datasets.DatasetDict({"train": numbers}).save_to_disk(str(bad))
    with pytest.raises(DataError, match=r"split 'train', row index 0: field 'en' is int, not a string"):
        list(open_source(hf_dataset=str(bad), src=SRC, tgt=TGT).pairs("train"))


def test_hf_needs_a_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({SRC: ["a"], TGT: ["b"]}).save_to_disk(str(tmp_path / "flat"))
    with pytest.raises(DataError, match="has no splits"):
        open_source(hf_dataset=str(tmp_path / "flat"), src=SRC, tgt=TGT).has_split("train")


def test_hf_hub_name_goes_through_load_dataset(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []
    table = datasets.Dataset.from_dict({"translation": [{"de": "hallo", "en": "hello"}]})

    def fake_load_dataset(name, config):
        calls.append((name, config))
        if name == "missing/dataset":
            raise FileNotFoundError("no such dataset on the hub")
        return datasets.DatasetDict({"train": table})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = open_source(hf_dataset="wmt/wmt14", hf_config="de-en", src="de", tgt="en")
    assert isinstance(source, HuggingFaceSource)
    assert list(source.pairs("train")) == [("hallo", "hello")]
    assert source.describe()["name"] == "wmt/wmt14" and source.describe()["config"] == "de-en"
    assert calls == [("wmt/wmt14", "de-en")]  # loaded once, then cached
    with pytest.raises(DataError, match=r"cannot load Hugging Face dataset missing/dataset \(x\): FileNotF"):
        open_source(hf_dataset="missing/dataset", hf_config="x", src="de", tgt="en").has_split("train")


def test_hf_without_datasets_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(JanusError, match=r"pip install janusgen\[hf\]"):
        open_source(hf_dataset="wmt/wmt14", src="de", tgt="en").has_split("train")
