"""The JANUS objective: the length loss and the fused label-smoothed cross-entropy and symmetric KL of
janusgen.losses, combined (docs/method.md, "The loss" and "Curriculum"):

    L = w_ar L_AR + w_nar L_NAR + w_aux L_AUX + w_len L_len
        + w1 KL*(AR, NAR) + w2 KL*(NAR, AUX) + w3 KL*(AR, AUX)

`ar` and `cmlm` are the same objective with other weights (presets.OBJECTIVE_PRESETS); a view none of
whose terms has a weight is skipped, so `ar` costs one AR view and `cmlm` one NAR view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from janusgen.data.masking import (
    inner_lengths,
    masked_ranks,
    release_mask,
    span_mask,
    uniform_mask,
    with_suffixes,
)
from janusgen.losses import label_smoothed_ce, symmetric_kl
from janusgen.model.config import ModelConfig
from janusgen.model.layout import MaskedView, decoder_sequence, masked_view
from janusgen.model.transformer import Encoded, JanusTransformer
from janusgen.objective_config import ObjectiveConfig


def length_targets(tgt: torch.Tensor, pad_id: int, max_target_length: int) -> torch.Tensor:
    return inner_lengths(tgt, pad_id).clamp(max=max_target_length)


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
