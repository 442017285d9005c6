"""AdamW with the inverse square-root schedule (linear warmup, then lr * sqrt(warmup / step))."""

from __future__ import annotations

import math

import torch
from torch import nn

from janusgen.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; biases, LayerNorm weights and embeddings' padding are plain parameters: weight decay
    applies to matrices only (fairseq/nanoGPT practice)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)


def inverse_sqrt_lr(step: int, cfg: TrainConfig) -> float:
    """Learning rate for update number `step` (1-based)."""
    if cfg.warmup_updates > 0 and step <= cfg.warmup_updates:
        return cfg.warmup_init_lr + (cfg.lr - cfg.warmup_init_lr) * step / cfg.warmup_updates
    return cfg.lr * math.sqrt(max(cfg.warmup_updates, 1) / step)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
