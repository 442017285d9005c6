"""Training under torchrun with 2 CPU processes (gloo): equivalence with one process, failure, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import train_argv

pytestmark = pytest.mark.slow

TRAIN = [
    "--precision",
    "fp32",
    "--preset",
    "tiny",
    "--objective",
    "janus",
    "--max-tokens",
    "512",
    "--lr",
    "2e-3",
    "--warmup",
    "2",
    "--log-every",
    "1",
    "--valid-bleu-sentences",
    "0",
    "--seed",
    "3",
    "--device",
    "cpu",
]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def _janus(args: list[str], nproc: int | None = None, **kw) -> subprocess.Popen:
    if nproc is None:
        cmd = [sys.executable, "-m", "janusgen", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "janusgen",
            *args,
        ]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last" / "model.safetensors"))


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def test_two_ranks_equal_one_process_with_the_same_global_batch(toy_data, tmp_path):
    common = ["--data", str(toy_data), *TRAIN, "--max-updates", "4", "--validate-every", "4"]
    two = _janus(["train", "--out", str(tmp_path / "ddp"), *common], nproc=2)
    rc, log = _finish(two)
    assert rc == 0, log
    one = _janus(["train", "--out", str(tmp_path / "single"), *common, "--update-freq", "2"])
    rc, log = _finish(one)
    assert rc == 0, log

    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name
    la, lb = _losses(tmp_path / "ddp"), _losses(tmp_path / "single")
    assert [la[s] for s in range(1, 5)] == pytest.approx([lb[s] for s in range(1, 5)], rel=1e-5)
    # only rank 0 wrote: one log line per step
    assert len([1 for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines() if '"train"' in x]) == 4


@pytest.mark.parametrize(
    "objective", [["--objective", "ar"], ["--objective", "cmlm"], ["--objective-option", "ar_only_updates=2"]]
)
def test_every_objective_trains_under_two_ranks(toy_data, tmp_path, objective):
    """Each objective leaves parts of the model idle (the length classifier for ar, the NAR view during
    the AR-only curriculum): DDP must still see a gradient for every trainable parameter."""
    run = tmp_path / "run"
    args = ["train", "--data", str(toy_data), "--out", str(run), *TRAIN, *objective]
    rc, log = _finish(_janus([*args, "--max-updates", "4", "--validate-every", "4"], nproc=2))
    assert rc == 0, log[-3000:]
    assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == 4


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_a_dead_rank_fails_the_job_and_the_run_resumes(toy_data, tmp_path):
    run = tmp_path / "run"
    args = train_argv(
        str(toy_data),
        str(run),
        *TRAIN,
        "--max-updates",
        "100000",
        "--validate-every",
        "2",
        "--dist-timeout",
        "30",
    )
    proc = _janus(args, nproc=2)
    deadline = time.time() + 240
    while not (run / "last" / "model.safetensors").is_file():
        assert proc.poll() is None, _finish(proc)[1]
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.5)
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # the rank started last
    rc, log = _finish(proc, timeout=120)
    assert rc != 0
    assert "Signal 9" in log or "SIGKILL" in log or "failed" in log.lower(), log[-2000:]

    step = json.loads((run / "last" / "trainer_state.json").read_text())["step"]
    assert step >= 2
    # resume on ONE process (a different number of ranks) from the last checkpoint
    rc, log = _finish(
        _janus(
            train_argv(
                str(toy_data),
                str(run),
                "--resume",
                "--max-updates",
                str(step + 2),
                "--device",
                "cpu",
            )
        )
    )
    assert rc == 0, log
    assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == step + 2


def test_bf16_autocast_under_ddp(toy_data, tmp_path):
    args = train_argv(
        str(toy_data),
        str(tmp_path / "run"),
        *TRAIN,
        "--max-updates",
        "2",
        "--validate-every",
        "2",
        "--precision",
        "bf16",
    )
    rc, log = _finish(_janus(args, nproc=2))
    assert rc == 0, log
    assert json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())["world_size"] == 2


def _valid_rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"valid"' in x]


def test_more_ranks_than_validation_batches(toy_data, tmp_path):
    """The valid split falls on fewer batches than there are ranks: validation still covers every batch
    once (no trim, no error), and its losses equal those of one process with the same global batch."""
    from janusgen.data.batching import PairBatches
    from janusgen.data.dataset import PairDataset
    from janusgen.presets import model_preset

    valid = PairBatches(PairDataset.open(toy_data, "valid"), model_preset("tiny"), 512, 3, False, even=False)
    assert len(valid.sampler.global_batches(0)) < 3

    common = ["--data", str(toy_data), *TRAIN, "--max-updates", "2", "--validate-every", "1"]
    rc, log = _finish(_janus(["train", "--out", str(tmp_path / "ddp"), *common], nproc=3))
    assert rc == 0, log[-3000:]
    rc, log = _finish(_janus(["train", "--out", str(tmp_path / "one"), *common, "--update-freq", "3"]))
    assert rc == 0, log[-3000:]
    ddp, one = _valid_rows(tmp_path / "ddp"), _valid_rows(tmp_path / "one")
    assert [r["step"] for r in ddp] == [r["step"] for r in one] == [1, 2]
    for a, b in zip(ddp, one, strict=True):
        for name in ("loss", "ar", "nar", "aux", "length", "kl_ar_nar", "kl_nar_aux", "kl_ar_aux"):
            assert a[name] == pytest.approx(b[name], rel=1e-5, abs=1e-6), name
    for run in ("ddp", "one"):
        assert (tmp_path / run / "last" / "model.safetensors").is_file()
        assert (tmp_path / run / "best" / "model.safetensors").is_file()
