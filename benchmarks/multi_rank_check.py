"""Many ranks on a CPU (gloo), with the multi-GPU command's batch size, on a real corpus:

1. 8 ranks train the `tiny` preset with `--max-tokens 8192` (more ranks than the valid split has batches)
   past 2 validations, writing `last` and `best`;
2. 1 rank trains with the same global batch (`--update-freq 8`): its validation losses must equal the
   8 ranks' to 1e-5;
3. the 8-rank run resumes on 3 ranks for another validation;
4. the same checkpoint is validated on 1, 2, 3 and 8 ranks: the numbers must be the same.
Writes benchmarks/results/multi_rank_check.json and prints a table.

    python benchmarks/multi_rank_check.py --data work/bible_data --work work/multi_rank
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5
TRAIN = ["--preset", "tiny", "--objective", "janus", "--max-tokens", "8192", "--precision", "fp32"]
TRAIN += [
    "--device",
    "cpu",
    "--lr",
    "1e-3",
    "--warmup",
    "2",
    "--log-every",
    "1",
    "--valid-bleu-sentences",
    "0",
]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def _run(args: list[str], ranks: int) -> str:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    cmd = [*launcher, *args] if ranks > 1 else [sys.executable, *args]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def _janus(args: list[str], ranks: int) -> str:
    return _run(["-m", "janusgen", *args], ranks)


def _valid_rows(run: Path) -> dict[int, dict]:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if r["split"] == "valid"}


def _largest_difference(a: dict, b: dict) -> float:
    names = [k for k in a if k not in ("step", "split") and isinstance(a[k], float)]
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in names)


def validate_only(checkpoint: Path, data: Path) -> None:
    """(Under torchrun) the validation losses of `checkpoint` on this world's ranks, printed by rank 0."""
    import torch

    from janusgen import checkpoint as ckpt
    from janusgen.config import from_dict
    from janusgen.data.batching import PairBatches
    from janusgen.data.dataset import PairDataset
    from janusgen.objective_config import ObjectiveConfig
    from janusgen.objectives import JanusObjective
    from janusgen.training.config import TrainConfig
    from janusgen.training.distributed import init_distributed, shutdown
    from janusgen.training.trainer import Trainer

    ctx = init_distributed("cpu")
    model, tokenizer, config = ckpt.load_model(checkpoint)
    cfg = dataclasses.replace(from_dict(TrainConfig, config["train"]), valid_bleu_sentences=0)
    objective = JanusObjective(from_dict(ObjectiveConfig, config["objective"]), cfg.seed)
    valid = PairBatches(
        PairDataset.open(data, "valid"),
        model.cfg,
        cfg.max_tokens,
        cfg.seed,
        False,
        ctx.rank,
        ctx.world_size,
        even=False,
    )
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, objective, None, valid, tokenizer, cfg, ctx, Path(out), {})
        with torch.no_grad():
            results = trainer.validate()
    if ctx.is_main:
        print(
            json.dumps(
                {"world_size": ctx.world_size, "batches": len(valid.sampler.global_batches(0)), **results}
            )
        )
    shutdown(ctx)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="prepared data (e.g. the Bible's)")
    parser.add_argument("--work", type=Path, required=True, help="a folder for the runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "multi_rank_check.json")
    parser.add_argument("--validate-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.validate_only is not None:
        validate_only(args.validate_only, args.data)
        return 0

    data, work = args.data.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    common = ["train", "--data", str(data), *TRAIN, "--max-updates", "6", "--validate-every", "3"]
    print("== 8 ranks", file=sys.stderr)
    _janus([*common, "--out", str(work / "ranks8"), "--overwrite"], 8)
    print("== 1 rank, --update-freq 8", file=sys.stderr)
    _janus([*common, "--out", str(work / "rank1"), "--update-freq", "8", "--overwrite"], 1)
    eight, one = _valid_rows(work / "ranks8"), _valid_rows(work / "rank1")
    print("== the 8-rank run resumed on 3 ranks", file=sys.stderr)
    resume = ["train", "--data", str(data), "--out", str(work / "ranks8"), "--resume", "--device", "cpu"]
    _janus([*resume, "--max-updates", "9"], 3)
    resumed = _valid_rows(work / "ranks8")
    checkpoint = work / "ranks8" / "checkpoints" / "step_00000006"
    print("== one checkpoint validated on 1, 2, 3 and 8 ranks", file=sys.stderr)
    script = [str(Path(__file__).resolve()), "--data", str(data), "--work", str(work), "--validate-only"]
    by_ranks = {
        n: json.loads(_run([*script, str(checkpoint)], n).strip().splitlines()[-1]) for n in (1, 2, 3, 8)
    }
    differences = {
        "8_ranks_vs_1_rank_training_validation": max(_largest_difference(eight[s], one[s]) for s in (3, 6)),
        "one_checkpoint_on_1_2_3_8_ranks": max(
            _largest_difference(by_ranks[n], by_ranks[1]) for n in (2, 3, 8)
        ),
    }
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/multi_rank_check.py --data work/bible_data --work work/multi_rank",
        "train_options": TRAIN,
        "valid_batches": by_ranks[1]["batches"],
        "validations_8_ranks": [eight[s] for s in sorted(eight)],
        "validations_1_rank_update_freq_8": [one[s] for s in sorted(one)],
        "resumed_on_3_ranks": sorted(resumed),
        "last_and_best_written": all(
            (work / "ranks8" / n / "model.safetensors").is_file() for n in ("last", "best")
        ),
        "validation_by_ranks": by_ranks,
        "largest_relative_difference": differences,
        "tolerance": TOLERANCE,
        "met": all(d <= TOLERANCE for d in differences.values()) and sorted(resumed) == [3, 6, 9],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"valid batches: {report['valid_batches']} (for 8 ranks)")
    print(f"{'ranks':>5}  {'loss':>12}  {'ar':>10}  {'nar':>10}  {'aux':>10}")
    for n, r in by_ranks.items():
        print(f"{n:>5}  {r['loss']:>12.7f}  {r['ar']:>10.6f}  {r['nar']:>10.6f}  {r['aux']:>10.6f}")
    for name, value in differences.items():
        print(f"{name}: largest relative difference {value:.1e} (tolerance {TOLERANCE:g})")
    steps = sorted(resumed)
    print(f"validations of the run: {steps} (steps 3, 6 on 8 ranks, 9 on 3 ranks); met: {report['met']}")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
