"""AdamW with the inverse square-root schedule (linear warmup, then lr * sqrt(warmup / step))."""

from __future__ import annotations

import math

import torch
from torch import nn

from janusgen.training.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW; biases, LayerNorm weights and embeddings' padding are plain parameters: weight decay
    applies to matrices only (fairseq/nanoGPT practice). `fused`: one kernel for all parameters (CUDA)
    instead of a few per parameter tensor."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.adam_eps, fused=fused or None)


def inverse_sqrt_lr(step: int, cfg: TrainConfig, progress: float = 0.0) -> float:
    """Learning rate for update number `step` (1-based): linear warmup, then lr * sqrt(warmup / t).

    With `cfg.warmup_fraction`, t is `progress` (the fraction of the run done: of the time budget, or
    of the updates) and the warmup that fraction of it; otherwise t is the step and the warmup
    `warmup_updates`. On a run whose updates take the same time both are the same curve."""
    if cfg.warmup_fraction is not None:  # a fraction in (0, 1): checked by TrainConfig
        t, warmup = max(progress, 1e-6), cfg.warmup_fraction
    else:
        t, warmup = float(step), float(max(cfg.warmup_updates, 1))
    if t <= warmup:
        return cfg.warmup_init_lr + (cfg.lr - cfg.warmup_init_lr) * t / warmup
    return cfg.lr * math.sqrt(warmup / t)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
