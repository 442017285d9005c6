"""The training options: optimisation, schedule, validation and checkpointing, and how a run executes."""

from __future__ import annotations

from dataclasses import dataclass

from janusgen.config import check_bool, check_choice, check_float, check_int


@dataclass(frozen=True)
class TrainConfig:
    max_updates: int = 100_000
    time_budget_s: float | None = None  # stop (and save) after this much training time
    # stop (and save) after this update while every schedule still spans max_updates: a run paused at a
    # chosen point (the end of JANUS's AR-only phase, to distil with it) that --resume continues
    stop_at: int | None = None
    max_tokens: int = 4096  # padded tokens per batch and rank (batch size x longest side)
    update_freq: int = 1  # gradient accumulation: batches per update
    lr: float = 5e-4
    warmup_updates: int = 4000
    # the warmup as a fraction of the run instead (of --time-budget when there is one, else of
    # --max-updates): the learning rate then follows the clock, as the update count differs by machine
    warmup_fraction: float | None = None
    warmup_init_lr: float = 1e-7
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    weight_decay: float = 0.0001
    clip_norm: float = 1.0  # 0 disables clipping
    # auto (chosen from the hardware: janusgen.hardware), fp32, bf16 (autocast, CPU or GPU),
    # fp16 (autocast + loss scaling, GPU only)
    precision: str = "auto"
    seed: int = 1
    log_every: int = 50
    validate_every: int = 1000  # also the checkpoint interval
    valid_bleu_sentences: int = 200  # quick greedy-AR and one-pass-NAR BLEU on this many valid pairs (0: off)
    keep_last: int = 3  # step checkpoints kept besides `best` and `last`
    best_metric: str = "loss"  # loss (lower is better), bleu_ar or bleu_nar (higher is better)
    # the targets the AR view learns from: the data's (`train.tgt`), or, on data written by
    # `janus distill`, the original references it keeps (NAR/AUX on the teacher's outputs, AR on the
    # human translations: distillation for the NAR view without the AR view learning the teacher's errors)
    ar_targets: str = "data"
    # How the run executes, not what it learns (each may change on --resume):
    # DataLoader worker processes per rank that collate and mask batches ahead (None: 2 on a GPU, 0 on a
    # CPU, where workers would take the cores the training needs)
    data_workers: int | None = None
    # deterministic algorithms (and cuBLAS's fixed workspace): a rerun on the same hardware, software and
    # number of ranks gives bit-identical weights; without it, GPU kernels may sum in another order
    deterministic: bool = False
    compile: bool = False  # torch.compile the model and loss (dynamic shapes: batches differ in length)

    def __post_init__(self) -> None:
        s = "train"
        for name in ("max_updates", "max_tokens", "update_freq", "log_every", "validate_every"):
            check_int(self, s, name, 1)
        check_float(self, s, "time_budget_s", 0.0, optional=True)
        check_int(self, s, "stop_at", 1, optional=True)
        check_float(self, s, "lr", 0.0, lo_open=True)
        check_int(self, s, "warmup_updates", 0)
        check_float(self, s, "warmup_fraction", 0.0, 1.0, lo_open=True, optional=True)
        check_float(self, s, "warmup_init_lr", 0.0)
        check_float(self, s, "adam_beta1", 0.0, 1.0, hi_open=True)
        check_float(self, s, "adam_beta2", 0.0, 1.0, hi_open=True)
        check_float(self, s, "adam_eps", 0.0, lo_open=True)
        check_float(self, s, "weight_decay", 0.0)
        check_float(self, s, "clip_norm", 0.0)
        check_choice(self, s, "precision", PRECISIONS)
        check_int(self, s, "seed", 0, 2**63 - 1)
        check_int(self, s, "valid_bleu_sentences", 0)
        check_int(self, s, "keep_last", 0)
        check_choice(self, s, "best_metric", BEST_METRICS)
        check_choice(self, s, "ar_targets", AR_TARGETS)
        check_int(self, s, "data_workers", 0, 256, optional=True)
        check_bool(self, s, "deterministic")
        check_bool(self, s, "compile")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BEST_METRICS = ("loss", "bleu_ar", "bleu_nar")
AR_TARGETS = ("data", "references")
