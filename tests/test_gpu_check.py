"""benchmarks/gpu_check.py --dry-run: the GPU check's code, on the CPU in seconds, so that it cannot rot
between the times a GPU is at hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_check_runs_dry(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["training"]["loss_fell"]
    assert {r["objective"] for r in report["throughput"]} == {"ar", "janus"}
    settings = {r["setting"] for r in report["decoding"]}
    assert settings == {"AR beam 5", "AR greedy", "NAR T=4 l=3", "NAR T=10 l=3", "speculative"}
    assert set(report["goals"]) == {
        "mfu_paper_iwslt_janus",
        "janus_over_ar_step",
        "nar_t10_over_beam5_batch1",
    }
    assert "goal nar_t10_over_beam5_batch1" in proc.stdout
