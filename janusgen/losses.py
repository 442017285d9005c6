"""The fused losses the objectives are made of: label-smoothed cross-entropy and the symmetric KL between
two views' distributions, each an autograd function over row chunks (tested against the plain
expressions in tests/test_objectives.py)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# The vocabulary-sized terms dominate a JANUS step on CPU when written as plain tensor expressions
# (a dozen full passes over (rows, V) float32 arrays per KL, each a fresh allocation). These two
# autograd functions compute the value and the gradient with respect to the logits in row chunks
# small enough to stay in cache, in float32, and keep only per-row statistics between the passes.

# On a CPU a chunk stays in cache (~4 MB of float32); on a GPU every chunk is a handful of kernel
# launches, so chunks are as large as a small share of the device's memory allows (a chunk holds about
# five float32 temporaries of its size in the KL's backward).
_CPU_CHUNK_ELEMENTS = 1 << 20
_GPU_CHUNK_ELEMENTS = (1 << 22, 1 << 27)  # at least 16 MB, at most 512 MB of float32 per temporary
_GPU_MEMORY_SHARE = 1 / 512  # of the device's memory, per temporary


def chunk_elements(device: torch.device) -> int:
    """Logit elements the fused CE / KL process at once on `device`."""
    return _CPU_CHUNK_ELEMENTS if device.type != "cuda" else _gpu_chunk_elements(device.index)


@functools.cache
def _gpu_chunk_elements(index: int | None) -> int:
    total = torch.cuda.get_device_properties(index).total_memory
    low, high = _GPU_CHUNK_ELEMENTS
    return int(min(high, max(low, total * _GPU_MEMORY_SHARE / 4)))


def _float_copy(x: torch.Tensor) -> torch.Tensor:
    """A float32 copy that in-place operations may change (`.float()` returns x itself for float32)."""
    return x.to(torch.float32, copy=True)


def _rows_per_chunk(logits: torch.Tensor) -> int:
    rows, vocab = logits.shape
    return max(1, chunk_elements(logits.device) // max(vocab, 1))


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Per row: (1 - eps) * (lse - z_t) + eps * (lse - mean_v z_v), with z the logits."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
        rows, vocab = logits.shape
        loss = torch.empty(rows, device=logits.device)
        lse = torch.empty(rows, device=logits.device)
        step = _rows_per_chunk(logits)
        for s in range(0, rows, step):
            z = logits[s : s + step].float()
            lse[s : s + step] = torch.logsumexp(z, dim=-1)
            picked = z.gather(-1, target[s : s + step, None]).squeeze(-1)
            loss[s : s + step] = lse[s : s + step] - (1.0 - eps) * picked - eps * z.mean(dim=-1)
        ctx.save_for_backward(logits, target, lse)
        ctx.eps = eps
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        logits, target, lse = ctx.saved_tensors
        eps = ctx.eps
        rows, vocab = logits.shape
        grad = torch.empty_like(logits)
        step = _rows_per_chunk(logits)
        for s in range(0, rows, step):
            g = grad_loss[s : s + step, None]
            chunk = torch.exp(logits[s : s + step].float() - lse[s : s + step, None]).sub_(eps / vocab)
            chunk.scatter_add_(-1, target[s : s + step, None], torch.full_like(g, -(1.0 - eps)))
            grad[s : s + step] = chunk.mul_(g)
        return grad, None, None


class _SymmetricKL(torch.autograd.Function):
    """Per row: ½ Σ_v (p_v - q_v)(log p_v - log q_v) for p = softmax(a), q = softmax(b).

    With d = log p - log q, KL(p‖q) = Σ p d and KL(q‖p) = -Σ q d, the gradients are
    ∂/∂a = ½ [p (d - KL(p‖q) + 1) - q] and ∂/∂b = ½ [q (1 - d - KL(q‖p)) - p].
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        rows, vocab = a.shape
        stats = torch.empty(4, rows, device=a.device)  # lse_a, lse_b, KL(p‖q), KL(q‖p)
        step = _rows_per_chunk(a)
        for s in range(0, rows, step):
            za, zb = _float_copy(a[s : s + step]), _float_copy(b[s : s + step])
            lse_a, lse_b = torch.logsumexp(za, dim=-1), torch.logsumexp(zb, dim=-1)
            d = (za - zb).sub_((lse_a - lse_b)[:, None])
            stats[0, s : s + step], stats[1, s : s + step] = lse_a, lse_b
            stats[2, s : s + step] = (torch.exp(za.sub_(lse_a[:, None])) * d).sum(dim=-1)
            stats[3, s : s + step] = -(torch.exp(zb.sub_(lse_b[:, None])) * d).sum(dim=-1)
        ctx.save_for_backward(a, b, stats)
        return 0.5 * (stats[2] + stats[3])

    @staticmethod
    def backward(ctx, grad_kl: torch.Tensor):
        a, b, stats = ctx.saved_tensors
        rows, vocab = a.shape
        need_a, need_b = ctx.needs_input_grad[:2]
        # no buffer for a detached side (a fixed teacher): each is as large as the logits
        grad_a = torch.empty_like(a) if need_a else None
        grad_b = torch.empty_like(b) if need_b else None
        step = _rows_per_chunk(a)
        for s in range(0, rows, step):
            sl = slice(s, s + step)
            la = _float_copy(a[sl]).sub_(stats[0, sl, None])
            lb = _float_copy(b[sl]).sub_(stats[1, sl, None])
            d = la - lb
            p, q = la.exp_(), lb.exp_()
            half_g = 0.5 * grad_kl[sl, None]
            if grad_a is not None:
                grad_a[sl] = (p * (d - stats[2, sl, None] + 1.0) - q).mul_(half_g)
            if grad_b is not None:
                grad_b[sl] = (q * (1.0 - d - stats[3, sl, None]) - p).mul_(half_g)
        return grad_a, grad_b


def label_smoothed_ce(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float
) -> torch.Tensor:
    """Mean over valid tokens of (1 - eps) * NLL + eps * mean_v(-log p_v), in float32.
    logits (..., V), target and valid (...)."""
    vocab = logits.shape[-1]
    if torch.compiler.is_compiling():  # the compiler fuses the plain expression itself
        logp = F.log_softmax(logits.float(), dim=-1)
        per_row = -(1.0 - eps) * logp.gather(-1, target[..., None]).squeeze(-1) - eps * logp.mean(dim=-1)
        return _masked_mean(per_row, valid)
    per_row = _SmoothedCrossEntropy.apply(logits.reshape(-1, vocab), target.reshape(-1), eps)
    return _masked_mean(per_row.view(target.shape), valid)


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid positions of ½ [KL(p‖q) + KL(q‖p)] = ½ Σ_v (p_v - q_v)(log p_v - log q_v),
    in float32, with gradients through both sides (through one where the other is detached).
    logits (..., V), valid (...)."""
    vocab = logits_p.shape[-1]
    if torch.compiler.is_compiling():  # the compiler fuses the plain expression itself
        log_p, log_q = F.log_softmax(logits_p.float(), dim=-1), F.log_softmax(logits_q.float(), dim=-1)
        per_row = 0.5 * ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1)
        return _masked_mean(per_row, valid)
    per_row = _SymmetricKL.apply(logits_p.reshape(-1, vocab), logits_q.reshape(-1, vocab))
    return _masked_mean(per_row.view(valid.shape), valid)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # max(count, 1): a batch with nothing to cover (e.g. no masked token) contributes 0, not NaN
    return (values * valid).sum() / valid.sum().clamp(min=1)
