"""`janus generate` never loses a line or a file, and every bad input is one clear error
(RELIABILITY.md, "Data loss" and "Clear errors"). Driven through `janusgen.cli.main` in-process, but
for the closed pipe."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import torch

from janusgen.cli import main
from janusgen.config import DecodeConfig
from janusgen.errors import JanusError


@pytest.fixture
def argv(toy_checkpoint):
    return ["generate", "--checkpoint", str(toy_checkpoint), "--mode", "ar", "--beam", "1"]


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# ------------------------------------------------------------------ 1. --output never clobbers --input


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_output_that_is_the_input_is_refused(argv, tmp_path, capsys, link):
    src = tmp_path / "in.txt"
    src.write_text("casa perro\nsol luna\n", encoding="utf-8")
    out = src
    if link == "symlink":
        out = tmp_path / "link.txt"
        out.symlink_to(src)
    elif link == "hardlink":
        out = tmp_path / "hard.txt"
        os.link(src, out)
    assert main(argv + ["--input", str(src), "--output", str(out)]) == 2
    assert "is the same file as --input" in capsys.readouterr().err
    assert src.read_text(encoding="utf-8") == "casa perro\nsol luna\n"


def test_stdout_or_output_that_is_the_redirected_input_is_refused(argv, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("casa\n", encoding="utf-8")
    with open(src, "a", encoding="utf-8") as appended:  # janus generate --input in.txt >> in.txt
        monkeypatch.setattr(sys, "stdout", appended)
        assert main(argv + ["--input", str(src)]) == 2
    monkeypatch.undo()
    assert "stdout is the same file as --input" in capsys.readouterr().err
    with open(src, "rb") as redirected:  # janus generate --output in.txt < in.txt
        monkeypatch.setattr(sys, "stdin", redirected)
        assert main(argv + ["--output", str(src)]) == 2
    assert "is the same file as stdin" in capsys.readouterr().err
    assert src.read_text(encoding="utf-8") == "casa\n"


def test_output_is_written_through_a_temporary_file(argv, tmp_path, capsys):
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    out.write_text("the old output\n", encoding="utf-8")
    os.chmod(out, 0o640)
    src.write_bytes(b"casa\nsol\n\xff\nluna\n")  # fails at line 3, after two lines were translated
    assert main(argv + ["--input", str(src), "--output", str(out), "--buffer-lines", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{src}:3: not UTF-8" in err and f"--output {out} was not written" in err
    assert out.read_text(encoding="utf-8") == "the old output\n"  # a failed run never clobbers
    assert _leftovers(tmp_path) == []
    src.write_bytes(b"casa\nsol\n")
    assert main(argv + ["--input", str(src), "--output", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
    assert oct(out.stat().st_mode & 0o777) == oct(0o640)  # the replaced file keeps its permissions
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------ 4. --buffer-lines, and one way to split lines


@pytest.mark.parametrize("value", ["0", "-1"])
def test_buffer_lines_below_one_is_an_error(argv, tmp_path, capsys, value):
    src = tmp_path / "in.txt"
    src.write_text("casa\n", encoding="utf-8")
    assert main(argv + ["--input", str(src), "--buffer-lines", value]) == 2
    assert f"--buffer-lines {value}: must be at least 1" in capsys.readouterr().err


def test_input_and_stdin_split_lines_alike(argv, tmp_path, capsys, monkeypatch):
    data = b"casa\rperro\nsol\r\nluna\n\nmar"  # lone CR inside a line, CRLF, an empty line, no final LF
    src = tmp_path / "in.txt"
    src.write_bytes(data)
    assert main(argv + ["--input", str(src)]) == 0
    from_file = capsys.readouterr().out
    _stdin(monkeypatch, data)
    assert main(argv) == 0
    from_stdin = capsys.readouterr().out
    assert from_file == from_stdin
    lines = from_file.split("\n")
    assert len(lines) == 6 and lines[3] == "" and lines[5] == ""  # 5 outputs, the 4th empty


# ------------------------------------------------------------------- 5. non-UTF-8 input: line, byte


def test_non_utf8_stdin_names_the_line_and_keeps_the_lines_before(argv, capsys, monkeypatch):
    _stdin(monkeypatch, b"casa\nsol luna\nmar \xff\nperro\n")
    assert main(argv + ["--buffer-lines", "2"]) == 2
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2  # lines 1 and 2 were translated and written
    assert "stdin:3: not UTF-8 text (invalid start byte at byte offset 18 of stdin)" in captured.err
    assert "the 2 line(s) before it were written" in captured.err
    assert "Traceback" not in captured.err


def test_non_utf8_input_reports_the_byte_offset_in_the_file(argv, tmp_path, capsys):
    good = "".join(f"casa {'perro ' * (i % 7)}sol\n" for i in range(3000)).encode()
    src = tmp_path / "in.txt"
    src.write_bytes(good + b"luna caf\xe9 mar\n")
    assert main(argv + ["--input", str(src)]) == 2
    captured = capsys.readouterr()
    assert f"{src}:3001: not UTF-8 text" in captured.err
    assert f"at byte offset {len(good) + 8} of the file" in captured.err
    assert len(captured.out.splitlines()) == 3000


# ------------------------------------------------------------------------ 9. files, devices, options


def test_output_into_a_missing_folder_or_onto_a_folder(argv, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("casa\n", encoding="utf-8")
    assert main(argv + ["--input", str(src), "--output", str(tmp_path / "nope" / "out.txt")]) == 2
    assert f"folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert main(argv + ["--input", str(src), "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(argv + ["--input", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read --input" in capsys.readouterr().err


def test_a_missing_gpu_is_a_clear_error(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    src = tmp_path / "in.txt"
    src.write_text("casa\n", encoding="utf-8")
    for device in ("cuda", "cuda:1", "cuda:7"):  # cuda:7's error said "cuda"
        assert main(argv + ["--input", str(src), "--device", device]) == 2
        assert f"--device {device}: no CUDA device is available" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(argv + ["--input", str(src), "--device", "cuda:7"]) == 2
    assert "--device cuda:7: this machine has 1 CUDA device(s)" in capsys.readouterr().err
    assert main(argv + ["--input", str(src), "--device", "tpu"]) == 2
    assert "--device 'tpu': choose auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-len-a", "-1"], "--max-len-a -1.0: must be a number between 0 and 1000"),
        (["--max-len-a", "nan"], "--max-len-a nan: must be a number"),
        (["--max-len-b", "-1"], "--max-len-b -1: must be an integer between 0 and 100000"),
        (["--max-len-a", "0", "--max-len-b", "0"], "allows no token"),
        (["--beam", "0"], "--beam 0: must be an integer between 1 and 128"),
        (["--beam", "100000"], "--beam 100000: must be an integer between 1 and 128"),
        (["--length-beam", "129"], "--length-beam 129: must be an integer between 1 and 128"),
        (["--iterations", "0"], "--iterations 0: must be an integer between 1 and 1000"),
        (["--iterations", "5000"], "--iterations 5000: must be an integer between 1 and 1000"),
        (["--max-tokens", "0"], "--max-tokens 0: must be an integer of at least 1"),
        (["--length-penalty", "inf"], "--length-penalty inf: must be a number"),
        (["--length-offsets", ","], "--length-offsets: give between 1 and 128 offsets"),
    ],
)
def test_decode_options_are_checked_before_the_model_loads(tmp_path, capsys, options, message):
    missing = tmp_path / "no_checkpoint"  # never read: the options are refused first
    assert main(["generate", "--checkpoint", str(missing), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("janus: error: ") and message in err and "Traceback" not in err


def test_decode_config_checks_its_values_wherever_it_is_built():
    assert DecodeConfig(max_len_a=0.0, max_len_b=1).max_len_b == 1  # limits at the edge are fine
    assert DecodeConfig(max_len_a=0.5, max_len_b=0).max_len_a == 0.5  # 2 * 0.5 + 0 = 1 token
    assert DecodeConfig(beam=128, length_beam=128, iterations=1000).beam == 128
    with pytest.raises(JanusError, match="--beam True"):
        DecodeConfig(beam=True)
    with pytest.raises(JanusError, match="--mode 'fast': choose ar or nar"):
        DecodeConfig(mode="fast")
    with pytest.raises(JanusError, match="--rerank 1: must be true or false"):
        DecodeConfig(rerank=1)  # a JSON request's 1 or "no" would otherwise read as true


def test_a_closed_pipe_ends_quietly(toy_checkpoint, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("casa perro\n" * 300, encoding="utf-8")
    command = [sys.executable, "-m", "janusgen", "generate", "--checkpoint", str(toy_checkpoint)]
    command += ["--beam", "1", "--input", str(src), "--buffer-lines", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


def test_the_truncation_warning_names_the_input_line(argv, tmp_path, capsys):
    """the warning named the index inside a chunk ("input 3" for line 7)."""
    src = tmp_path / "in.txt"
    lines = ["casa"] * 6 + [" ".join(["perro"] * 200)] + ["sol"] * 3
    src.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    assert (
        main(argv + ["--input", str(src), "--buffer-lines", "4", "--output", str(tmp_path / "out.txt")]) == 0
    )
    err = capsys.readouterr().err
    assert "janus: warning: 1 input(s) longer than the model's maximum" in err, err
    assert "(first: line 7)" in err and "Traceback" not in err
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 10
