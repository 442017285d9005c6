"""The training loop: `Trainer` takes a built model, objective and batches through updates, validation
and checkpoints; the recipe that builds them and decides where a run resumes is `janusgen.training.recipe`.

One loop for every objective, for one CPU, one GPU or many ranks under torchrun. Randomness (masks,
dropout) is reseeded per batch from (seed, epoch, position in the epoch's global batch list), so the
batches and masks of a run are the same whatever the number of ranks, the accumulation or the point
where it resumed (the arithmetic is not: see `--deterministic`).

On a GPU the loop reads nothing back from the device between log lines: batches come ready (masks and
token counts made on the CPU by the data loader, training/loader.py), the logged values stay on the
device until a log line needs them, and checkpoints are written by a background thread from a copy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from janusgen import checkpoint as ckpt
from janusgen.data.batching import PairBatches, SampledBatch
from janusgen.data.tokenizer_base import TextTokenizer
from janusgen.errors import JanusError
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective, LossInputs
from janusgen.progress import quiet, time_budget_text, training_bar
from janusgen.training import run_dir
from janusgen.training.checkpoint_writer import CheckpointWriter
from janusgen.training.config import TrainConfig
from janusgen.training.distributed import DistributedContext, all_reduce_sum, broadcast_float
from janusgen.training.health import (
    PROJECT_AFTER_UPDATES,
    check_finite,
    projection_warnings,
    quick_bleu,
    result_warnings,
)
from janusgen.training.loader import BatchMaker, ReadyBatch, batch_stream
from janusgen.training.logger import MetricsLogger
from janusgen.training.optim import build_optimizer, inverse_sqrt_lr, set_lr

log = logging.getLogger(__name__)

# the epoch number validation batches take their seeds from: one that training never reaches
VALID_EPOCH = 2**31 - 1


class ObjectiveModule(nn.Module):
    """Model + objective behind one `forward`, so that DistributedDataParallel sees every call."""

    def __init__(self, model: JanusTransformer, objective: JanusObjective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        return self.objective.terms(self.model, inputs)


@dataclass
class TrainerState:
    step: int = 0
    elapsed_s: float = 0.0
    best_value: float | None = None
    best_step: int | None = None


class Trainer:
    def __init__(
        self,
        model: JanusTransformer,
        objective: JanusObjective,
        train_data: PairBatches,
        valid_data: PairBatches,
        tokenizer: TextTokenizer,
        cfg: TrainConfig,
        ctx: DistributedContext,
        out: Path,
        run_config: dict[str, Any],
    ) -> None:
        self.model = model
        self.objective = objective
        self.train_data = train_data
        self.valid_data = valid_data
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.ctx = ctx
        self.out = out
        self.run_config = run_config
        self.state = TrainerState()
        objective.freeze_untrained(model)  # before the optimizer and DDP see the parameters
        self.optimizer = build_optimizer(model, cfg, fused=ctx.device.type == "cuda")
        # fp16 needs loss scaling; the CPU's scaler exercises the same path where there is no GPU
        self.scaler = torch.amp.GradScaler(ctx.device.type) if cfg.precision == "fp16" else None
        module: nn.Module = ObjectiveModule(model, objective)
        if ctx.enabled:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            # buffers are constants (position tables, BART's logits bias): no broadcast before each forward;
            # gradients live in DDP's buckets instead of being copied there after every backward
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=device_ids, broadcast_buffers=False, gradient_as_bucket_view=True
            )
        if cfg.compile:
            module = torch.compile(module, dynamic=True)
        self.module = module
        self.train_maker = BatchMaker(train_data, objective, cfg.seed, model.cfg)
        self.valid_maker = BatchMaker(valid_data, objective, cfg.seed, model.cfg)
        self.logger = MetricsLogger(out, enabled=ctx.is_main)
        self.writer = CheckpointWriter()
        self.last_valid: dict[str, float] = {}
        self.warnings: list[str] = []
        self.last_batch: SampledBatch | None = None  # the last training batch consumed (resume position)

    def warn(self, text: str) -> None:
        """A problem with the run the user should act on: printed now, and in the summary."""
        self.warnings.append(text)
        log.warning(text)

    # ------------------------------------------------------------------------------------- resume
    def resume(self, path: Path) -> None:
        meta, tensors = ckpt.load_trainer_state(path)
        ckpt.restore_optimizer(self.optimizer, meta["optimizer"], tensors, path)
        try:
            self.train_data.sampler.load_state_dict(meta["sampler"])
        except JanusError as e:
            raise JanusError(f"{path / ckpt.STATE_JSON}: {e}") from None
        self.objective.load_state_dict(meta.get("objective", {}))
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        self.state = TrainerState(meta["step"], meta["elapsed_s"], meta["best_value"], meta["best_step"])

    # -------------------------------------------------------------------------------------- train
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.ctx.device.type, dtype=dtype)

    def progress(self) -> float:
        """The fraction of the run done, for schedules given as fractions: of the time budget when
        there is one (the same on every rank: the elapsed time is rank 0's), else of the updates."""
        if self.cfg.time_budget_s is not None:
            return min(1.0, self.state.elapsed_s / max(self.cfg.time_budget_s, 1e-9))
        return min(1.0, self.state.step / self.cfg.max_updates)

    def train_step(self, batches: list[ReadyBatch]) -> tuple[dict[str, torch.Tensor], float, int]:
        """One update from `update_freq` batches: gradients synchronised only on the last one. Returns
        the logged values as tensors on the device (read at the next log line, not now), the learning
        rate and the target tokens."""
        self.model.train()
        totals: dict[str, torch.Tensor] = {}
        tokens = 0
        for i, ready in enumerate(batches):
            torch.manual_seed(ready.seed)  # dropout
            self.objective.set_update(self.state.step + 1, self.progress())
            inputs = ready.inputs.to(self.ctx.device, non_blocking=True)
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or not self.ctx.enabled else self.module.no_sync()
            with sync:
                with self.autocast():
                    out = self.objective.combine(self.module(inputs), inputs)
                loss = out.loss / len(batches)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            for name, value in (*out.terms.items(), ("loss", out.loss.detach())):
                totals[name] = totals.get(name, 0.0) + value.float() / len(batches)
            tokens += out.target_tokens
            self.last_batch = ready.sampled

        step = self.state.step + 1
        lr = inverse_sqrt_lr(step, self.cfg, self.progress())
        set_lr(self.optimizer, lr)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = self.cfg.clip_norm if self.cfg.clip_norm > 0 else math.inf
        # read at the next log line with the rest, which stops a run whose gradient stopped being finite
        # (validation does too, so nothing non-finite is ever saved): no read from the device per update
        totals["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, max_norm).float()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step = step
        return totals, lr, tokens

    def fit(self) -> dict[str, Any]:
        """Train to the end of the run (or its pause, or its time budget); every checkpoint handed to the
        background writer is on disk when this returns, or raises."""
        try:
            return self._fit()
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self.writer.wait()
            raise

    def _fit(self) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        if cfg.stop_at is not None and cfg.stop_at <= self.state.step:
            raise JanusError(f"--stop-at {cfg.stop_at}: the run is already at update {self.state.step}")
        if ctx.is_main:
            log.info(
                f"janus: {self.model.num_parameters() / 1e6:.2f}M parameters, "
                f"objective {self.objective.name}, {len(self.train_data.kept)} training pairs "
                f"({self.train_data.dropped} longer than the model's "
                f"maximum left out), {ctx.world_size} rank(s) on {ctx.device}"
            )
        stream = batch_stream(self.train_maker, iter(self.train_data.sampler), ctx.device, cfg.data_workers)
        by_time = cfg.time_budget_s is not None
        bar = training_bar(cfg, self.state.step, self.state.elapsed_s, disable=not ctx.is_main or quiet())
        window: dict[str, torch.Tensor] = {}
        window_lr, window_tokens, window_steps, window_start = 0.0, 0, 0, time.perf_counter()
        last_valid_step = self.state.step
        start_elapsed, start_time, start_step = self.state.elapsed_s, time.perf_counter(), self.state.step
        paused = cfg.stop_at is not None and cfg.stop_at < cfg.max_updates
        last_step = cfg.stop_at if paused else cfg.max_updates
        stop_reason = "stop_at" if paused else "max_updates"
        while self.state.step < last_step:
            logs, lr, tokens = self.train_step([next(stream) for _ in range(cfg.update_freq)])
            elapsed = start_elapsed + time.perf_counter() - start_time
            # a time budget needs rank 0's clock on every rank (schedules and the stop must agree); without
            # one the clock is only logged, by rank 0, and costs no collective
            self.state.elapsed_s = broadcast_float(ctx, elapsed) if by_time else elapsed
            if by_time:
                bar.set_description_str(time_budget_text(self.state.step, elapsed, cfg.time_budget_s), False)
            if self.state.step == start_step + PROJECT_AFTER_UPDATES and ctx.is_main:
                per_update = (self.state.elapsed_s - start_elapsed) / (self.state.step - start_step)
                for text in projection_warnings(
                    cfg, self.state.step, self.state.elapsed_s, per_update, ctx.device
                ):
                    self.warn(text)
            for k, v in logs.items():
                window[k] = window[k] + v if k in window else v
            window_lr, window_tokens, window_steps = window_lr + lr, window_tokens + tokens, window_steps + 1
            if self.state.step % cfg.log_every == 0 or self.state.step == cfg.max_updates:
                reduced = self._reduce_window(window, window_steps, window_tokens)
                seconds = time.perf_counter() - window_start
                reduced["tgt_tokens_per_s"] = reduced.pop("tokens") * window_steps / max(seconds, 1e-9)
                reduced["lr"] = window_lr / window_steps
                reduced["elapsed_s"] = self.state.elapsed_s
                self.logger.log(self.state.step, "train", reduced)
                # (fp16's loss scaler skips updates whose gradient overflowed: their grad_norm is inf)
                checked = {k: v for k, v in reduced.items() if k != "grad_norm" or self.scaler is None}
                check_finite(self.state.step, "training loss", checked, reduced["lr"])
                bar.set_postfix(
                    step=self.state.step,
                    loss=f"{reduced['loss']:.3f}",
                    tok_s=f"{reduced['tgt_tokens_per_s']:.0f}",
                    lr=f"{reduced['lr']:.2e}",
                )
                window, window_lr, window_tokens, window_steps = {}, 0.0, 0, 0
                window_start = time.perf_counter()
            bar.update(round(self.state.elapsed_s) - bar.n if by_time else 1)
            out_of_time = cfg.time_budget_s is not None and self.state.elapsed_s >= cfg.time_budget_s
            if self.state.step % cfg.validate_every == 0 or self.state.step == cfg.max_updates or out_of_time:
                self.validate_and_save()
                last_valid_step = self.state.step
            if out_of_time:
                stop_reason = "time_budget"
                break
        bar.close()
        del stream  # stops the data loader's workers
        if last_valid_step != self.state.step:
            self.validate_and_save()
        self.writer.wait()  # the last checkpoint is on disk when fit returns
        self.logger.close()
        if ctx.is_main:
            for text in result_warnings(self.state.step, self.last_valid):
                self.warn(text)
        return {
            "step": self.state.step,
            "elapsed_s": self.state.elapsed_s,
            "stop": stop_reason,
            "best_value": self.state.best_value,
            "best_step": self.state.best_step,
            "warnings": self.warnings,
        }

    def _reduce_window(self, window: dict[str, torch.Tensor], steps: int, tokens: int) -> dict[str, float]:
        """Mean over the window's updates and over ranks (tokens: summed over ranks), read from the
        device in one transfer (the only one between two log lines)."""
        names = sorted(window)
        values = torch.stack(
            [window[n].to(torch.float64) for n in names]
            + [window[names[0]].new_tensor(tokens, dtype=torch.float64)]
        )
        values = all_reduce_sum(self.ctx, values).tolist()
        out = {name: value / steps / self.ctx.world_size for name, value in zip(names, values, strict=False)}
        out["tokens"] = values[-1] / steps
        return out

    # ----------------------------------------------------------------------------------- validate
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss of every term over the valid split (fixed masks), and a quick BLEU of greedy AR and
        one-pass NAR decoding on the first `valid_bleu_sentences` pairs.

        The split's batches fall unevenly on the ranks (a rank may have none): each rank sums its
        batches' values weighted by their target tokens, and the sums are added over ranks, so the
        result is the same on any number of ranks."""
        self.model.eval()
        names = ("loss", *self.objective.term_names)
        # sums of w * value per name, then of w; on the device, read once after the reduction
        sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=self.ctx.device)
        # the same batches and masks at every validation, whatever came before (resume included):
        # the sampler is never advanced, and the seeds come from a stream no training batch uses
        for sampled in self.valid_data.sampler.rank_batches(0):
            ready = self.valid_maker[SampledBatch(VALID_EPOCH, sampled.position, sampled.indices)]
            inputs = ready.inputs.to(self.ctx.device, non_blocking=True)
            with self.autocast(), self.objective.full_loss():
                out = self.objective.loss(self.model, inputs)
            values = {"loss": out.loss, **out.terms}
            w = float(out.target_tokens)
            row = torch.stack([values[n].double() if n in values else sums.new_zeros(()) for n in names])
            sums += torch.cat([row, sums.new_ones(1)]) * w
        sums = all_reduce_sum(self.ctx, sums).cpu()
        results = {name: float(sums[i] / sums[-1]) for i, name in enumerate(names)}
        if self.cfg.valid_bleu_sentences > 0 and self.ctx.is_main:
            with self.autocast():
                bleus = quick_bleu(
                    self.model, self.objective, self.valid_data, self.tokenizer, self.cfg.valid_bleu_sentences
                )
            results.update(bleus)
        return results

    # --------------------------------------------------------------------------------------- save
    def validate_and_save(self) -> None:
        results = self.validate()
        if self.ctx.is_main:
            self.logger.log(self.state.step, "valid", results)
        # a loss that is not finite stops the run here: never saved, so never `best`
        check_finite(self.state.step, "validation loss", results, self.optimizer.param_groups[0]["lr"])
        self.last_valid = results
        for name in self.objective.observe_validation(results):
            if self.ctx.is_main:
                log.info(
                    f"step {self.state.step}: the AR view now also learns from {name} (the other view's "
                    f"validation cross-entropy is within {self.objective.cfg.kl_teacher_margin} of its own)"
                )
        metric = self.cfg.best_metric
        value = results.get(metric)
        is_best = False
        if value is not None:
            sign = 1.0 if metric == "loss" else -1.0
            is_best = self.state.best_value is None or sign * value < sign * self.state.best_value
            if is_best:
                self.state.best_value, self.state.best_step = value, self.state.step
        if self.ctx.is_main:
            shown = "  ".join(f"{k} {v:.3f}" for k, v in results.items())
            log.info(f"step {self.state.step}: valid {shown}")
            self.save(is_best, results)
        # no barrier: the other ranks wait for rank 0 at the next gradient reduction anyway, and the files
        # are written by a background thread while everyone trains on

    def save(self, is_best: bool, results: dict[str, float]) -> None:
        """Copy the state now; write the step folder and publish it (run_dir.publish) in the background.
        `results`: this step's validation, recorded in config.json and its model card."""
        step_dir = run_dir.step_folder(self.out, self.state.step)
        opt_meta, tensors = ckpt.optimizer_state(self.optimizer)
        tensors = {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        sampler = self.train_data.sampler
        meta = {
            "step": self.state.step,
            "elapsed_s": self.state.elapsed_s,
            "best_value": self.state.best_value,
            "best_step": self.state.best_step,
            "sampler": sampler.state_dict()
            if self.last_batch is None
            else sampler.state_after(self.last_batch),
            "objective": self.objective.state_dict(),
            "optimizer": opt_meta,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "world_size": self.ctx.world_size,
        }
        config = {**self.run_config, "step": self.state.step, "validation": results}
        out, keep_last, tokenizer = self.out, self.cfg.keep_last, self.tokenizer

        def write() -> None:
            ckpt.save_checkpoint(step_dir, weights, tokenizer, config, meta, tensors)
            run_dir.publish(out, step_dir, is_best, keep_last)

        self.writer.submit(write)
