"""The training losses: label-smoothed cross-entropy, the length loss, symmetric KL, and the JANUS
objective that combines them (docs/method.md, "The loss" and "Curriculum"):

    L = w_ar L_AR + w_nar L_NAR + w_aux L_AUX + w_len L_len
        + w1 KL*(AR, NAR) + w2 KL*(NAR, AUX) + w3 KL*(AR, AUX)

`ar` and `cmlm` are the same objective with other weights (config.objective_preset); a view none of
whose terms has a weight is skipped, so `ar` costs one AR view and `cmlm` one NAR view.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from janusgen.config import ModelConfig, ObjectiveConfig
from janusgen.data.masking import (
    inner_lengths,
    masked_ranks,
    release_mask,
    span_mask,
    uniform_mask,
    with_suffixes,
)
from janusgen.model.layout import MaskedView, decoder_sequence, masked_view
from janusgen.model.transformer import Encoded, JanusTransformer

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


def length_targets(tgt: torch.Tensor, pad_id: int, max_target_length: int) -> torch.Tensor:
    return inner_lengths(tgt, pad_id).clamp(max=max_target_length)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # max(count, 1): a batch with nothing to cover (e.g. no masked token) contributes 0, not NaN
    return (values * valid).sum() / valid.sum().clamp(min=1)


@dataclass
class LossOutput:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]  # each term, detached, for logging
    target_tokens: int  # predicted target tokens (BOS excluded)
    masked_tokens: int


@dataclass
class LossInputs:
    """One batch as the objective reads it. The data loader builds it on the CPU, where the targets are:
    the NAR/AUX view with its masks already sampled, and the token counts, so that the loss of a batch
    on a GPU needs no value back from the device (every such read waits for all queued work)."""

    src: torch.Tensor  # (B, S) source ids + EOS
    tgt: torch.Tensor  # (B, T) BOS + target ids + EOS
    ar_tgt: torch.Tensor | None  # (B, T') other targets of the AR view (distilled data), else None
    view: MaskedView | None  # the NAR/AUX view of tgt; None when the objective has no NAR/AUX term
    target_tokens: int  # non-padding tokens of tgt[:, 1:]
    masked_tokens: int  # masked positions of `view`

    def to(self, device: torch.device | str, non_blocking: bool = False) -> LossInputs:
        def move(x: Any) -> Any:
            return None if x is None else x.to(device, non_blocking=non_blocking)

        return dataclasses.replace(
            self, src=move(self.src), tgt=move(self.tgt), ar_tgt=move(self.ar_tgt), view=move(self.view)
        )

    def pin_memory(self) -> LossInputs:
        def pin(x: Any) -> Any:
            return None if x is None else x.pin_memory()

        return dataclasses.replace(
            self, src=pin(self.src), tgt=pin(self.tgt), ar_tgt=pin(self.ar_tgt), view=pin(self.view)
        )


class JanusObjective:
    """Computes the weighted loss of one batch; owns the generator that samples the masks. It tells the
    trainer what it computes (`term_names`) and which parts of the model it trains (`freeze_untrained`)."""

    TERMS = ("ar", "nar", "aux", "length", "kl_ar_nar", "kl_nar_aux", "kl_ar_aux")  # every term, log order
    # logged, never trained: the AR view's cross-entropy on the masked tokens, which `kl_ar_detach =
    # until_close` compares the NAR and AUX views' with
    DIAGNOSTICS = ("ar_masked",)
    AR_KLS = {"kl_ar_nar": "nar", "kl_ar_aux": "aux"}  # each KL with the AR view -> the other view

    def __init__(self, cfg: ObjectiveConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)
        self.needs_ar, self.needs_nar, self.needs_aux = cfg.trains_ar, cfg.trains_nar, cfg.trains_aux
        self.kl_scale = 1.0
        self.joint = True  # False during the AR-only curriculum phase
        # the KLs with the AR view whose AR side is a fixed teacher (gets no gradient) for now
        self.ar_fixed = {name: cfg.kl_ar_detach != "never" for name in self.AR_KLS}

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def term_names(self) -> tuple[str, ...]:
        """The terms a call computes (and `LossOutput.terms` holds) outside the AR-only phase, in TERMS
        order: a view's cross-entropy whenever the view is computed, a KL or L_len when weighted."""
        cfg = self.cfg
        computed = {
            "ar": self.needs_ar,
            "nar": self.needs_nar,
            "aux": self.needs_aux,
            "length": cfg.length_weight > 0,
            "kl_ar_nar": cfg.kl_ar_nar > 0,
            "kl_nar_aux": cfg.kl_nar_aux > 0,
            "kl_ar_aux": cfg.kl_ar_aux > 0,
            "ar_masked": self.watches_teachers,
        }
        return tuple(name for name in (*self.TERMS, *self.DIAGNOSTICS) if computed[name])

    @property
    def watches_teachers(self) -> bool:
        """Whether validations decide when the AR side of the KLs starts to learn from them."""
        cfg = self.cfg
        return cfg.kl_ar_detach == "until_close" and self.needs_ar and cfg.kl_ar_nar + cfg.kl_ar_aux > 0

    def observe_validation(self, results: dict[str, float]) -> list[str]:
        """`until_close`: open the AR side of each KL whose other view's validation cross-entropy on the
        masked tokens is within `kl_teacher_margin` of the AR view's on the same tokens; returns the
        KLs opened now. Validation results are the same on every rank, so every rank decides alike."""
        if not self.watches_teachers or "ar_masked" not in results:
            return []
        opened = []
        for name, view in self.AR_KLS.items():
            close = results.get(view, float("inf")) <= results["ar_masked"] + self.cfg.kl_teacher_margin
            if self.ar_fixed[name] and close:
                self.ar_fixed[name] = False
                opened.append(name)
        return opened

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run must restore besides the schedule (which follows the update count)."""
        return {"ar_fixed": dict(self.ar_fixed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ar_fixed.update({k: bool(v) for k, v in state.get("ar_fixed", {}).items() if k in self.ar_fixed})

    def untrained_modules(self, model: JanusTransformer) -> list[nn.Module]:
        """The parts of `model` no term gives a gradient: the length classifier without L_len."""
        if self.cfg.length_weight > 0:
            return []
        return model.length_modules()

    def freeze_untrained(self, model: JanusTransformer) -> None:
        """Turn off the gradients of `untrained_modules`, before the optimizer is built: they stay out of
        it, and DistributedDataParallel (which waits for a gradient of every trainable parameter) too."""
        for module in self.untrained_modules(model):
            module.requires_grad_(False)

    def sample_mask(
        self,
        tgt: torch.Tensor,
        pad_id: int,
        unk_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The masked positions of targets `tgt` (B, T); `unk_id`: the <unk> that release masking masks
        wherever the target has it; `generator`: default the objective's own."""
        cfg = self.cfg
        generator = self.generator if generator is None else generator
        if cfg.masking == "span":
            mask = span_mask(tgt, pad_id, cfg.mask_ratio, cfg.span_lambda, generator)
        elif cfg.masking == "release":
            mask = release_mask(tgt, pad_id, cfg.mask_ratio, cfg.span_lambda, generator, unk_id)
        elif cfg.masking == "uniform":
            mask = uniform_mask(tgt, pad_id, generator)
        else:
            raise ValueError(f"unknown masking {cfg.masking!r}")
        return with_suffixes(mask, tgt, pad_id, cfg.suffix_fraction, generator)

    def prepare(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        ar_tgt: torch.Tensor | None,
        model_cfg: ModelConfig,
        generator: torch.Generator | None = None,
    ) -> LossInputs:
        """The inputs of `loss` for one batch, on the device of `tgt` (the data loader: the CPU). The masks
        are drawn from `generator` (default: the objective's own, which the trainer reseeds per batch), so
        a batch's masks depend only on the seed it is given."""
        view = None
        pad_id = model_cfg.pad_id
        if self.needs_nar or self.needs_aux:
            generator = self.generator if generator is None else generator
            # what the decoder reads: the targets, after a decoder start token if the model has one (BART)
            dec_tgt = decoder_sequence(tgt, model_cfg.decoder_start_id)
            masked = self.sample_mask(tgt, pad_id, model_cfg.unk_id, generator)  # never the start token
            masked = F.pad(masked, (dec_tgt.shape[1] - tgt.shape[1], 0))
            rank = masked_ranks(masked, self.cfg.random_order, generator)
            view = masked_view(dec_tgt, masked, pad_id, model_cfg.mask_id, rank, query_stream=self.needs_aux)
        return LossInputs(
            src,
            tgt,
            ar_tgt,
            view,
            int((tgt[:, 1:] != pad_id).sum()),
            0 if view is None else int(view.masked_valid.sum()),
        )

    def __call__(
        self,
        model: JanusTransformer,
        src: torch.Tensor,
        tgt: torch.Tensor,
        ar_tgt: torch.Tensor | None = None,
    ) -> LossOutput:
        """The loss of one batch given as tensors: `prepare` (masks from the objective's generator),
        then `loss`."""
        return self.loss(model, self.prepare(src, tgt, ar_tgt, model.cfg))

    def loss(self, model: JanusTransformer, batch: LossInputs) -> LossOutput:
        """The loss of one prepared batch: `terms`, then `combine`."""
        return self.combine(self.terms(model, batch), batch)

    def terms(self, model: JanusTransformer, batch: LossInputs) -> dict[str, torch.Tensor]:
        """Every term of one prepared batch, unweighted (what `--compile` compiles: the weights, which a
        ramp changes every update, stay outside). `batch.ar_tgt`: other targets for the AR view
        (distilled data: the original references; the NAR/AUX views learn `tgt`); the KLs with the AR
        view then have no common target and are refused (the trainer checks that before training).
        Reads nothing back from the device."""
        cfg, mcfg = self.cfg, model.cfg
        src, tgt, ar_tgt = batch.src, batch.tgt, batch.ar_tgt
        eps = cfg.label_smoothing
        terms: dict[str, torch.Tensor] = {}
        enc = model.encode(src)
        if ar_tgt is not None and (cfg.kl_ar_nar > 0 or cfg.kl_ar_aux > 0):
            raise ValueError("the KLs with the AR view need the AR view on the same targets (ar_tgt=None)")

        needs_nar, needs_aux = self.needs_nar and self.joint, self.needs_aux and self.joint
        ar_logits = None
        # what the decoder reads: the targets, after a decoder start token if the model has one (BART)
        start = mcfg.decoder_start_id
        if self.needs_ar:
            ar_seq = decoder_sequence(tgt if ar_tgt is None else ar_tgt, start)
            ar_logits = model.ar_logits(ar_seq, enc)  # (B, T-1, V): predicts ar_seq[:, 1:]
            terms["ar"] = label_smoothed_ce(ar_logits, ar_seq[:, 1:], ar_seq[:, 1:] != mcfg.pad_id, eps)

        if needs_nar or needs_aux:
            enc_nar = model.encode(src) if cfg.encode_per_view and self.needs_ar else enc
            view = batch.view
            assert view is not None, "LossInputs without a view for an objective with NAR/AUX terms"
            hidden = model.decode(view, enc_nar)
            targets, valid = view.masked_targets, view.masked_valid
            index = view.placeholder_rows[:, :, None].expand(-1, -1, hidden.shape[-1])
            nar_logits = model.logits(hidden.gather(1, index))  # (B, K, V)
            aux_logits = model.logits(hidden[:, view.num_content :]) if self.needs_aux else None  # (B, K, V)
            if needs_nar:
                terms["nar"] = label_smoothed_ce(nar_logits, targets, valid, eps)
            if needs_aux:
                terms["aux"] = label_smoothed_ce(aux_logits, targets, valid, eps)
            if ar_logits is not None and ar_tgt is None:
                # P_AR at the masked positions: query row m_j - 1 of the AR view predicts s_{m_j}
                at = (view.masked_positions - 1).clamp(min=0)[:, :, None].expand(-1, -1, ar_logits.shape[-1])
                ar_at_masked = ar_logits.gather(1, at)
                others = {"kl_ar_nar": nar_logits, "kl_ar_aux": aux_logits}
                for name, other in others.items():
                    if getattr(cfg, name) > 0:
                        teacher = ar_at_masked.detach() if self.ar_fixed[name] else ar_at_masked
                        terms[name] = symmetric_kl(teacher, other, valid)
                if self.watches_teachers:
                    with torch.no_grad():
                        terms["ar_masked"] = label_smoothed_ce(ar_at_masked, targets, valid, eps)
            if cfg.kl_nar_aux > 0:
                terms["kl_nar_aux"] = symmetric_kl(nar_logits, aux_logits, valid)

        if cfg.length_weight > 0:
            enc_len = enc_nar if (needs_nar or needs_aux) else enc
            terms["length"] = self.length_loss(model, enc_len, tgt)
        return terms

    def combine(self, terms: dict[str, torch.Tensor], batch: LossInputs) -> LossOutput:
        """The weighted sum of `terms` (the KL weights as the curriculum's ramp has them now)."""
        cfg = self.cfg
        weights = {
            "ar": cfg.ar_weight,
            "nar": cfg.nar_weight,
            "aux": cfg.aux_weight,
            "length": cfg.length_weight,
            "kl_ar_nar": cfg.kl_ar_nar * self.kl_scale,
            "kl_nar_aux": cfg.kl_nar_aux * self.kl_scale,
            "kl_ar_aux": cfg.kl_ar_aux * self.kl_scale,
        }
        loss = sum(weights[name] * value for name, value in terms.items() if name in weights)
        return LossOutput(
            loss,
            {k: v.detach() for k, v in terms.items()},
            batch.target_tokens,
            batch.masked_tokens if "nar" in terms or "aux" in terms else 0,
        )

    @staticmethod
    def length_loss(model: JanusTransformer, enc: Encoded, tgt: torch.Tensor) -> torch.Tensor:
        logits = model.length_logits(enc)
        return F.cross_entropy(
            logits.float(), length_targets(tgt, model.cfg.pad_id, model.cfg.max_target_length)
        )

    def set_update(self, update: int, progress: float = 0.0) -> None:
        """Where training is: the 1-based update number, and `progress` in [0, 1], the fraction of the
        run done (of the time budget, or of the updates). During the AR-only phase (the first
        `ar_only_updates` updates, or `ar_only_fraction` of the run) only L_AR and L_len are trained;
        then the KL weights ramp up over `kl_warmup_updates` (or `kl_warmup_fraction`), so that the
        NAR and AUX streams, still poor when they join, do not pull the AR stream back."""
        cfg = self.cfg
        self.joint = update > cfg.ar_only_updates and progress >= cfg.ar_only_fraction
        if cfg.kl_warmup_fraction > 0:
            ramp = (progress - cfg.ar_only_fraction) / cfg.kl_warmup_fraction
        elif cfg.kl_warmup_updates > 0:
            ramp = (update - cfg.ar_only_updates) / cfg.kl_warmup_updates
        else:
            ramp = 1.0
        self.kl_scale = min(1.0, max(0.0, ramp)) if self.joint else 0.0

    @contextmanager
    def full_loss(self) -> Iterator[None]:
        """The loss without the curriculum: validation measures this at every step, so that losses
        (and the `best` checkpoint) compare across the phases."""
        saved = self.joint, self.kl_scale
        self.joint, self.kl_scale = True, 1.0
        try:
            yield
        finally:
            self.joint, self.kl_scale = saved

    def reseed(self, seed: int) -> None:
        """The trainer reseeds per batch from the batch's identity, so masks do not depend on how many
        ranks there are, on gradient accumulation, or on where a run was resumed."""
        self.generator.manual_seed(seed)
