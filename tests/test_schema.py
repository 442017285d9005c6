"""janusgen.schema: the one checker of the JSON files janusgen reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from janusgen.errors import JanusError
from janusgen.fileio import read_json
from janusgen.schema import Flag, Int, ListOf, MapOf, Nullable, Number, Record, Text, check, check_inside

SPEC = Record(
    {
        "name": Text(),
        "kind": Text(choices=("a", "b")),
        "count": Int(0),
        "rate": Number(0),
        "best": Nullable(Number()),
        "on": Flag(),
        "items": ListOf(Int(0, 9)),
        "pair": ListOf(Number(), length=2),
        "sizes": MapOf(Record({"pairs": Int(0)})),
    },
    optional=("best", "pair"),
)
GOOD = {
    "name": "x",
    "kind": "a",
    "count": 3,
    "rate": 0.5,
    "on": True,
    "items": [1, 2],
    "sizes": {"train": {"pairs": 3, "extra": "kept"}},
}


def test_a_fitting_value_passes_and_extra_keys_are_allowed():
    assert check(Path("f.json"), {**GOOD, "other": 1, "best": None, "pair": [1, 2.5]}, SPEC)["count"] == 3


@pytest.mark.parametrize(
    "change, message",
    [
        ({"count": "3"}, r'f\.json: count must be an integer >= 0 \(found "3"\)'),
        ({"count": -5}, r"count must be an integer >= 0 \(found -5\)"),
        ({"count": True}, r"count must be an integer >= 0 \(found true\)"),
        ({"rate": float("nan")}, r"rate must be a finite number >= 0 \(found NaN\)"),
        ({"kind": "c"}, r'kind must be one of "a", "b" \(found "c"\)'),
        ({"name": ""}, r"name must be a non-empty string"),
        ({"on": 1}, r"on must be true or false"),
        ({"items": [1, 10]}, r"items\[1\] must be an integer between 0 and 9 \(found 10\)"),
        ({"pair": [1]}, r"pair must be a list of 2"),
        ({"sizes": "train"}, r'sizes must be an object \(found "train"\)'),
        ({"sizes": {"train": {"pairs": "x"}}}, r"sizes\.train\.pairs must be an integer"),
        ({"sizes": {"train": {}}}, r"f\.json: missing key\(s\) in sizes\.train: pairs"),
        ({"best": "x"}, r"best must be null or a finite number"),
    ],
)
def test_each_mismatch_is_one_error_naming_the_file_and_the_key(change, message):
    with pytest.raises(JanusError, match=message):
        check(Path("f.json"), {**GOOD, **change}, SPEC)


def test_a_missing_key_or_a_wrong_top_level_type_is_named():
    with pytest.raises(JanusError, match=r"f\.json: missing key\(s\): count, rate"):
        check(Path("f.json"), {k: v for k, v in GOOD.items() if k not in ("count", "rate")}, SPEC)
    with pytest.raises(JanusError, match=r"f\.json: must be an object \(found \[1, 2\]\)"):
        check(Path("f.json"), [1, 2], SPEC)


def test_long_values_are_shortened_in_the_error():
    with pytest.raises(JanusError) as info:
        check(Path("f.json"), {**GOOD, "count": "x" * 1000}, SPEC)
    assert len(str(info.value)) < 150


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"a": "\xff\xfe"}', r"f\.json: not UTF-8 text \(invalid start byte at byte offset 7\)"),
        (b"[" * 100_000 + b"]" * 100_000, r"f\.json: JSON nested too deeply to read"),
        (b"{oops", r"f\.json:1: not valid JSON"),
    ],
    ids=["not-utf8", "deeply-nested", "bad-json"],
)
def test_unreadable_json_is_one_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(JanusError, match=message):
        read_json(path)


def test_a_folder_read_as_json_is_an_error(tmp_path):
    (tmp_path / "f.json").mkdir()
    with pytest.raises(JanusError, match=r"cannot read .*f\.json"):
        read_json(tmp_path / "f.json")


def test_names_read_from_json_must_stay_inside_their_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ok.txt").write_text("x")
    (tmp_path / "payload.txt").write_text("x")
    (folder / "link.txt").symlink_to(tmp_path / "payload.txt")
    assert check_inside(folder, "ok.txt", folder / "meta.json", "files") == folder / "ok.txt"
    for name in ("../payload.txt", str(tmp_path / "payload.txt"), "link.txt", "", ".", 5, "a\0b"):
        with pytest.raises(JanusError, match=r"meta\.json: files .* is not a file inside"):
            check_inside(folder, name, folder / "meta.json", "files")
    with pytest.raises(JanusError, match=r"files 'gone\.txt' does not exist in"):
        check_inside(folder, "gone.txt", folder / "meta.json", "files")
    json.dumps(GOOD)  # (GOOD stays JSON)
