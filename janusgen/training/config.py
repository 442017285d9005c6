"""The training options: optimisation, schedule, validation and checkpointing, and how a run executes."""

from __future__ import annotations

from dataclasses import dataclass

from janusgen.config import check_bool, check_choice, check_float, check_int, option, parse_duration

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BEST_METRICS = ("loss", "bleu_ar", "bleu_nar")
AR_TARGETS = ("data", "references")


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. The described fields are `janus train`'s options (janusgen.cli.train)."""

    max_updates: int = option(100_000, "stop after this many updates", metavar="UPDATES")
    time_budget_s: float | None = option(  # stop (and save) after this much training time
        None,
        "stop after this much training time (90s, 15m, 1.5h)",
        flag="--time-budget",
        metavar="DURATION",
        parse=parse_duration,
    )
    # stop (and save) after this update while every schedule still spans max_updates: a run paused at a
    # chosen point (the end of JANUS's AR-only phase, to distil with it) that --resume continues
    stop_at: int | None = option(
        None,
        "pause after this update, the schedules still spanning --max-updates (--resume goes on), e.g. at the "
        "end of the AR-only phase to distil with it",
        metavar="UPDATE",
    )
    max_tokens: int = option(4096, "padded tokens per batch and rank", metavar="TOKENS")
    update_freq: int = option(1, "batches per update (gradient accumulation)", metavar="FREQ")
    lr: float = option(5e-4, "peak learning rate", metavar="LR")
    warmup_updates: int = option(
        4000,
        "linear warmup updates before the inverse square-root decay",
        flag="--warmup",
        metavar="UPDATES",
    )
    # the warmup as a fraction of the run instead (of --time-budget when there is one, else of
    # --max-updates): the learning rate then follows the clock, as the update count differs by machine
    warmup_fraction: float | None = option(
        None,
        "the warmup as a fraction of the run (of --time-budget when given), instead of --warmup",
        metavar="FRACTION",
    )
    warmup_init_lr: float = 1e-7
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    weight_decay: float = option(0.0001, "AdamW weight decay", metavar="DECAY")
    clip_norm: float = option(1.0, "gradient clipping norm (0: off)", metavar="NORM")
    # auto (chosen from the hardware: janusgen.hardware), fp32, bf16 (autocast, CPU or GPU),
    # fp16 (autocast + loss scaling, GPU only)
    precision: str = option(
        "auto",
        f"{', '.join(PRECISIONS)}; auto: bf16 on a GPU that has it (else fp16), on a CPU only where bf16 "
        "is native and faster, else fp32",
        metavar="PRECISION",
        choices=PRECISIONS,
    )
    seed: int = option(1, "random seed (batches, masks, dropout, initialisation)", metavar="SEED")
    log_every: int = option(50, "updates between log lines", metavar="EVERY")
    validate_every: int = option(1000, "updates between validations and checkpoints", metavar="EVERY")
    valid_bleu_sentences: int = option(  # quick greedy-AR and one-pass-NAR BLEU
        200, "valid pairs for the quick BLEU (0: off)", metavar="SENTENCES"
    )
    keep_last: int = option(3, "step checkpoints to keep besides best and last", metavar="LAST")
    best_metric: str = option(  # loss: lower is better; the BLEUs: higher is better
        "loss", f"what `best` means: {', '.join(BEST_METRICS)}", metavar="METRIC", choices=BEST_METRICS
    )
    # the targets the AR view learns from: the data's (`train.tgt`), or, on data written by
    # `janus distill`, the original references it keeps (NAR/AUX on the teacher's outputs, AR on the
    # human translations: distillation for the NAR view without the AR view learning the teacher's errors)
    ar_targets: str = option(
        "data",
        "data: the AR view learns the data's targets; references: on data made by `janus distill`, the "
        "original references it keeps (the NAR/AUX views learn the teacher's outputs); may change with "
        "--resume, to go on from the AR-only phase on data the run's own AR view distilled",
        metavar="TARGETS",
        choices=AR_TARGETS,
    )
    # How the run executes, not what it learns (each may change on --resume):
    data_workers: int | None = option(  # None: workers would take the cores a CPU run needs
        None,
        "DataLoader processes per rank that collate and mask batches ahead (default: 2 on a GPU, 0 on a CPU)",
        metavar="WORKERS",
    )
    deterministic: bool = option(
        False,
        "deterministic kernels (and cuBLAS's fixed workspace): a rerun on the same hardware, software and "
        "number of ranks gives bit-identical weights; batches and masks never depend on the number of ranks, "
        "the order of the gradient sums does",
    )
    compile: bool = option(
        False, "torch.compile the model and loss, with dynamic shapes (batches differ in length)"
    )

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
