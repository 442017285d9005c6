"""benchmarks/engine_speed.py --quick: the engine comparison's code on a tiny model in seconds, so that it
cannot rot between the times it is run on a quiet machine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_engine_comparison_runs_quick(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("ctranslate2")
    out = tmp_path / "engine.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "engine_speed.py"),
            "--quick",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert [(r["setting"], r["batch"]) for r in result["rows"]] == [
        ("greedy", 1),
        ("beam 4", 1),
        ("greedy", 4),
        ("beam 4", 4),
    ]
    for row in result["rows"]:
        systems = row["systems"]
        assert {"janusgen fp32", "HF generate", "CTranslate2 fp32", "CTranslate2 int8"} <= set(systems)
        assert set(systems) | set(result["skipped"]) == {
            "janusgen fp32",
            "janusgen compiled",
            "janusgen int8",
            "janusgen bf16",
            "HF generate",
            "CTranslate2 fp32",
            "CTranslate2 int8",
        }
        if row["beam"] == 1:  # the same weights and the same greedy search: the same tokens
            for name in ("janusgen compiled", "HF generate", "CTranslate2 fp32"):
                assert systems[name]["agree"] == 1.0, (name, row)
    assert "| quick (d64, 2+2) | greedy | 1 |" in proc.stdout
