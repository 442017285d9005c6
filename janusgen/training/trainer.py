"""The training loop: `Trainer` takes a built model, objective and batches through updates, validation
and checkpoints; the recipe that builds them and decides where a run resumes is `janusgen.training.recipe`.

One loop for every objective, for one CPU, one GPU or many ranks under torchrun. Randomness (masks,
dropout) is reseeded per batch from (seed, epoch, position in the epoch's global batch list), so a
run is reproducible whatever the number of ranks, the accumulation or the point where it resumed.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from janusgen import checkpoint as ckpt
from janusgen.config import TrainConfig
from janusgen.data.batching import PairBatches, SampledBatch
from janusgen.data.tokenizer import TextTokenizer
from janusgen.errors import JanusError
from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective, LossOutput
from janusgen.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    broadcast_float,
)
from janusgen.training.logger import MetricsLogger
from janusgen.training.optim import build_optimizer, inverse_sqrt_lr, set_lr

# the epoch number validation batches take their seeds from: one that training never reaches
VALID_EPOCH = 2**31 - 1


# Below this many updates a run has not left the unigram plateau (BENCHMARKS.md): say so
MIN_LEARNING_UPDATES = 300
PROJECT_AFTER_UPDATES = 10  # updates timed before projecting how many the time budget allows
# quick validation BLEU below which a model has not learned yet; one-pass NAR with one length scores far
# below Mask-Predict's T=10 (0.64 one-pass went with 7.0 at T=10, l=3 in the AVX2 demo: BENCHMARKS.md)
NEAR_ZERO_BLEU = {"bleu_ar": 1.0, "bleu_nar": 0.25}


def non_finite(values: dict[str, float]) -> dict[str, float]:
    """The entries of `values` that are NaN or infinite."""
    return {name: value for name, value in values.items() if not math.isfinite(value)}


def diverged(step: int, what: str, values: dict[str, float], lr: float) -> JanusError:
    """The error that stops a run whose loss or gradient stopped being finite: training on would only
    write NaN weights (and a NaN `best`). The checkpoints written before are left as they are."""
    shown = ", ".join(f"{name} {value}" for name, value in sorted(values.items()))
    return JanusError(
        f"update {step}: the {what} is not finite ({shown}): the run diverged and stops here, before "
        f"saving anything more (what it saved before is finite); lower --lr (now {lr:g}) or --clip-norm, or "
        "raise --warmup, and start again with --overwrite"
    )


class ObjectiveModule(nn.Module):
    """Model + objective behind one `forward`, so that DistributedDataParallel sees every call."""

    def __init__(self, model: JanusTransformer, objective: JanusObjective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, ar_tgt: torch.Tensor | None = None) -> LossOutput:
        return self.objective(self.model, src, tgt, ar_tgt)


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
        self.optimizer = build_optimizer(model, cfg)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        module = ObjectiveModule(model, objective)
        if ctx.enabled:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
        self.module = module
        self.logger = MetricsLogger(out, enabled=ctx.is_main)
        self.last_valid: dict[str, float] = {}
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        """A problem with the run the user should act on: printed now, and in the summary."""
        self.warnings.append(text)
        tqdm.write(f"janus: warning: {text}", file=sys.stderr)

    def _check_projection(self, start_step: int, start_elapsed: float) -> None:
        """After the first updates, project how many the time budget allows and warn when the run cannot
        learn in it: too few updates, or a warmup that takes most of them."""
        cfg = self.cfg
        per_update = (self.state.elapsed_s - start_elapsed) / max(self.state.step - start_step, 1)
        if cfg.time_budget_s is None or per_update <= 0:
            return
        projected = self.state.step + int((cfg.time_budget_s - self.state.elapsed_s) / per_update)
        projected = min(projected, cfg.max_updates)
        where = f"{per_update:.2f} s per update on {self.ctx.device} in {cfg.precision}"
        if projected < MIN_LEARNING_UPDATES:
            self.warn(
                f"this run will make only about {projected} updates in its time budget ({where}): too few "
                "to learn. Give it a longer --time-budget, a smaller --preset or smaller --max-tokens"
            )
        if cfg.warmup_fraction is None and cfg.warmup_updates > projected / 2:
            self.warn(
                f"the warmup of {cfg.warmup_updates} updates is longer than half of the ~{projected} updates "
                f"this run will make ({where}): the learning rate will barely rise. Use --recipe cpu "
                "(a warmup counted in time) or a smaller --warmup"
            )

    def _check_result(self) -> None:
        if self.state.step < MIN_LEARNING_UPDATES:
            self.warn(
                f"the run made only {self.state.step} updates: too few to learn (see the projection above); "
                "its outputs will be near empty"
            )
        for name, floor in NEAR_ZERO_BLEU.items():
            value = self.last_valid.get(name)
            if value is not None and value < floor:
                self.warn(
                    f"validation {name} is {value:.2f} after {self.state.step} updates: the model has not "
                    "learned to translate yet. Train longer (--time-budget / --max-updates, or --resume)"
                )

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

    def train_step(self, batches: list[SampledBatch]) -> dict[str, float]:
        """One update from `update_freq` batches: gradients synchronised only on the last one."""
        self.model.train()
        totals: dict[str, float] = {}
        tokens = 0
        for i, sampled in enumerate(batches):
            seed = sampled.seed(self.cfg.seed)
            torch.manual_seed(seed)  # dropout
            self.objective.reseed(seed)  # masks
            self.objective.set_update(self.state.step + 1, self.progress())
            batch = self.train_data.collate(sampled.indices).to(self.ctx.device)
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or not self.ctx.enabled else self.module.no_sync()
            with sync:
                with self.autocast():
                    out = self.module(batch.src, batch.tgt, batch.ar_tgt)
                loss = out.loss / len(batches)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            for name, value in out.terms.items():
                totals[name] = totals.get(name, 0.0) + float(value) / len(batches)
            totals["loss"] = totals.get("loss", 0.0) + float(out.loss.detach()) / len(batches)
            tokens += out.target_tokens

        step = self.state.step + 1
        lr = inverse_sqrt_lr(step, self.cfg, self.progress())
        set_lr(self.optimizer, lr)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_norm if self.cfg.clip_norm > 0 else math.inf)
        )
        if self.scaler is None and not math.isfinite(grad_norm):  # (fp16's scaler skips such updates)
            raise diverged(step, "gradient", {"grad_norm": grad_norm, **non_finite(totals)}, lr)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step = step
        return {**totals, "lr": lr, "grad_norm": grad_norm, "tokens": float(tokens)}

    def fit(self) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        if cfg.stop_at is not None and cfg.stop_at <= self.state.step:
            raise JanusError(f"--stop-at {cfg.stop_at}: the run is already at update {self.state.step}")
        if ctx.is_main:
            print(
                f"janus: {self.model.num_parameters() / 1e6:.2f}M parameters, "
                f"objective {self.objective.name}, {len(self.train_data.kept)} training pairs "
                f"({self.train_data.dropped} longer than the model's "
                f"maximum left out), {ctx.world_size} rank(s) on {ctx.device}",
                file=sys.stderr,
            )
        batches = iter(self.train_data.sampler)
        # with a time budget the bar (and its ETA) follows the clock, otherwise the update count
        by_time = cfg.time_budget_s is not None
        bar = tqdm(
            total=round(cfg.time_budget_s) if by_time else cfg.max_updates,
            initial=round(self.state.elapsed_s) if by_time else self.state.step,
            disable=not ctx.is_main,
            unit="s" if by_time else "upd",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        window: dict[str, float] = {}
        window_steps, window_start = 0, time.perf_counter()
        last_valid_step = self.state.step
        start_elapsed, start_time, start_step = self.state.elapsed_s, time.perf_counter(), self.state.step
        paused = cfg.stop_at is not None and cfg.stop_at < cfg.max_updates
        last_step = cfg.stop_at if paused else cfg.max_updates
        stop_reason = "stop_at" if paused else "max_updates"
        while self.state.step < last_step:
            logs = self.train_step([next(batches) for _ in range(cfg.update_freq)])
            # rank 0's clock, so that time-based schedules and the stop agree on every rank
            self.state.elapsed_s = broadcast_float(ctx, start_elapsed + time.perf_counter() - start_time)
            if self.state.step == start_step + PROJECT_AFTER_UPDATES and ctx.is_main:
                self._check_projection(start_step, start_elapsed)
            for k, v in logs.items():
                window[k] = window.get(k, 0.0) + v
            window_steps += 1
            if self.state.step % cfg.log_every == 0 or self.state.step == cfg.max_updates:
                reduced = self._reduce_window(window, window_steps)
                seconds = time.perf_counter() - window_start
                reduced["tgt_tokens_per_s"] = reduced.pop("tokens") * window_steps / max(seconds, 1e-9)
                reduced["elapsed_s"] = self.state.elapsed_s
                self.logger.log(self.state.step, "train", reduced)
                # (fp16's loss scaler skips updates whose gradient overflowed: their grad_norm is inf)
                bad = non_finite(
                    {k: v for k, v in reduced.items() if k != "grad_norm" or self.scaler is None}
                )
                if bad:
                    raise diverged(self.state.step, "training loss", bad, reduced["lr"])
                bar.set_postfix(
                    step=self.state.step,
                    loss=f"{reduced['loss']:.3f}",
                    tok_s=f"{reduced['tgt_tokens_per_s']:.0f}",
                    lr=f"{reduced['lr']:.2e}",
                )
                window, window_steps, window_start = {}, 0, time.perf_counter()
            bar.update(round(self.state.elapsed_s) - bar.n if by_time else 1)
            out_of_time = cfg.time_budget_s is not None and self.state.elapsed_s >= cfg.time_budget_s
            if self.state.step % cfg.validate_every == 0 or self.state.step == cfg.max_updates or out_of_time:
                self.validate_and_save()
                last_valid_step = self.state.step
            if out_of_time:
                stop_reason = "time_budget"
                break
        bar.close()
        if last_valid_step != self.state.step:
            self.validate_and_save()
        self.logger.close()
        if ctx.is_main:
            self._check_result()
        return {
            "step": self.state.step,
            "elapsed_s": self.state.elapsed_s,
            "stop": stop_reason,
            "best_value": self.state.best_value,
            "best_step": self.state.best_step,
            "warnings": self.warnings,
        }

    def _reduce_window(self, window: dict[str, float], steps: int) -> dict[str, float]:
        """Mean over the window's updates and over ranks (tokens: summed over ranks)."""
        names = sorted(window)
        values = all_reduce_sum(
            self.ctx, torch.tensor([window[n] for n in names], dtype=torch.float64, device=self.ctx.device)
        ).tolist()
        out = {}
        for name, value in zip(names, values, strict=True):
            per_rank = value / steps
            out[name] = per_rank if name == "tokens" else per_rank / self.ctx.world_size
        return out

    # ----------------------------------------------------------------------------------- validate
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss of every term over the valid split (fixed masks), and a quick BLEU of greedy AR and
        one-pass NAR decoding on the first `valid_bleu_sentences` pairs."""
        self.model.eval()
        names = ("loss", *self.objective.term_names)
        sums = torch.zeros(len(names) + 1, dtype=torch.float64)
        # the same batches and masks at every validation, whatever came before (resume included):
        # the sampler is never advanced, and the seeds come from a stream no training batch uses
        sampler = self.valid_data.sampler
        batches = sampler.global_batches(0)
        for position in range(sampler.rank, len(batches), sampler.world_size):
            sampled = SampledBatch(VALID_EPOCH, position, batches[position])
            self.objective.reseed(sampled.seed(self.cfg.seed))
            batch = self.valid_data.collate(sampled.indices).to(self.ctx.device)
            with self.autocast(), self.objective.full_loss():
                out = self.objective(self.model, batch.src, batch.tgt)
            w = float(out.target_tokens)
            for i, name in enumerate(names):
                value = out.loss if name == "loss" else out.terms.get(name)
                if value is not None:
                    sums[i] += w * float(value)
            sums[-1] += w
        sums = all_reduce_sum(self.ctx, sums.to(self.ctx.device)).cpu()
        present = {"loss"} | set(out.terms)
        results = {name: float(sums[i] / sums[-1]) for i, name in enumerate(names) if name in present}
        if self.cfg.valid_bleu_sentences > 0 and self.ctx.is_main:
            results.update(self.quick_bleu())
        return results

    def quick_bleu(self) -> dict[str, float]:
        """BLEU of the modes this objective trains: greedy AR, one-pass NAR (one length candidate)."""
        from janusgen.decoding import decode_ar, decode_nar
        from janusgen.evaluation.metrics import bleu

        modes = {}
        if self.objective.needs_ar:
            modes["bleu_ar"] = lambda src: decode_ar(self.model, src, beam=1).tokens
        if self.objective.needs_nar:
            modes["bleu_nar"] = lambda src: decode_nar(self.model, src, iterations=1, length_beam=1).tokens
        data = self.valid_data
        positions = np.arange(min(self.cfg.valid_bleu_sentences, len(data.kept)))
        refs = self.tokenizer.decode([data.dataset.tgt[int(i)].tolist() for i in data.kept[positions]])
        hyps: dict[str, list[list[int]]] = {name: [] for name in modes}
        for chunk in np.array_split(positions, max(1, math.ceil(len(positions) / 64))):
            src = data.collate(chunk).src.to(self.ctx.device)
            with self.autocast():
                for name, decode in modes.items():
                    hyps[name] += decode(src)
        return {name: bleu(self.tokenizer.decode(h), refs).score for name, h in hyps.items()}

    # --------------------------------------------------------------------------------------- save
    def validate_and_save(self) -> None:
        results = self.validate()
        if non_finite(results):  # never saved, so never `best`
            if self.ctx.is_main:
                self.logger.log(self.state.step, "valid", results)
            lr = self.optimizer.param_groups[0]["lr"]
            raise diverged(self.state.step, "validation loss", non_finite(results), lr)
        self.last_valid = results
        for name in self.objective.observe_validation(results):
            if self.ctx.is_main:
                tqdm.write(
                    f"step {self.state.step}: the AR view now also learns from {name} (the other view's "
                    f"validation cross-entropy is within {self.objective.cfg.kl_teacher_margin} of its own)",
                    file=sys.stderr,
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
            self.logger.log(self.state.step, "valid", results)
            shown = "  ".join(f"{k} {v:.3f}" for k, v in results.items())
            tqdm.write(f"step {self.state.step}: valid {shown}", file=sys.stderr)
            self.save(is_best)
        barrier(self.ctx)

    def save(self, is_best: bool) -> None:
        step_dir = ckpt.step_folder(self.out, self.state.step)
        opt_meta, tensors = ckpt.optimizer_state(self.optimizer)
        meta = {
            "step": self.state.step,
            "elapsed_s": self.state.elapsed_s,
            "best_value": self.state.best_value,
            "best_step": self.state.best_step,
            "sampler": self.train_data.sampler.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": opt_meta,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "world_size": self.ctx.world_size,
        }
        ckpt.save_checkpoint(
            step_dir, self.model, self.tokenizer, {**self.run_config, "step": self.state.step}, meta, tensors
        )
        # `best` before `last`: a kill between the two leaves `last` (where --resume goes on) at the older
        # step, whose rerun writes `best` again; never `last` ahead of a `best` that stays behind for good
        if is_best:
            ckpt.copy_checkpoint(step_dir, self.out / "best")
        ckpt.copy_checkpoint(step_dir, self.out / "last")
        steps = sorted((self.out / "checkpoints").glob("step_*"))
        for old in steps[: max(0, len(steps) - self.cfg.keep_last)]:
            ckpt.remove_checkpoint(old)
