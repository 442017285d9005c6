"""Start a new run from a step checkpoint of another, with other objective settings: an ablation that shares
the other run's first updates exactly (weights, optimizer moments, data position, schedule).

The long CPU budget's JANUS runs train the AR loss alone for their first half, so the paper's loss and its
no-KL ablation are the same run up to that point: the no-KL run branches from the paper-loss run's
step 3,000 instead of training those updates again.

    python benchmarks/branch_run.py work/long_kl_s1/janus/checkpoints/step_00003000 work/long_nokl_s1/janus \\
        --objective-option kl_ar_nar=0 --objective-option kl_nar_aux=0 --objective-option kl_ar_aux=0

Then continue it as any run (`janus train --resume --out ...`, or the bench that trains it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from janusgen import checkpoint as ckpt
from janusgen.cli.options import parse_assignments
from janusgen.config import from_dict, to_dict
from janusgen.fileio import sha256_file, write_json
from janusgen.objective_config import ObjectiveConfig


def branch(step_dir: Path, out: Path, objective_changes: dict) -> Path:
    if out.exists():
        raise SystemExit(f"{out} exists: choose a new run folder")
    config = ckpt.read_config(step_dir)
    objective = dataclasses.replace(from_dict(ObjectiveConfig, config["objective"]), **objective_changes)
    config["objective"] = to_dict(objective)
    target = out / "checkpoints" / step_dir.name
    shutil.copytree(step_dir, target)
    write_json(target / ckpt.CONFIG_FILE, config)
    sums = json.loads((target / ckpt.CHECKSUMS_FILE).read_text())
    sums["sha256"][ckpt.CONFIG_FILE] = sha256_file(target / ckpt.CONFIG_FILE)
    write_json(target / ckpt.CHECKSUMS_FILE, sums)
    ckpt.link_checkpoint(target, out / "last")
    ckpt.link_checkpoint(target, out / "best")
    step = config["step"]
    log = step_dir.parent.parent / "log.jsonl"
    if log.is_file():  # the shared history, up to the branch point
        rows = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
        (out / "log.jsonl").write_text("".join(row + "\n" for row in rows))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step_dir", type=Path, help="a step checkpoint of the run to branch from")
    parser.add_argument("out", type=Path, help="the new run folder")
    parser.add_argument("--objective-option", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    changes = parse_assignments(args.objective_option, ObjectiveConfig, "--objective-option")
    print(f"branched into {branch(args.step_dir, args.out, changes)}")


if __name__ == "__main__":
    main()
