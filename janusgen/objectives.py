"""The training losses: label-smoothed cross-entropy, the length loss, symmetric KL, and the JANUS
objective that combines them (JANUS_METHOD.md):

    L = w_ar L_AR + w_nar L_NAR + w_aux L_AUX + w_len L_len
        + w1 KL*(AR, NAR) + w2 KL*(NAR, AUX) + w3 KL*(AR, AUX)

`ar` and `cmlm` are the same objective with other weights (config.objective_preset); a view none of
whose terms has a weight is skipped, so `ar` costs one AR view and `cmlm` one NAR view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from janusgen.config import ObjectiveConfig
from janusgen.data.masking import inner_lengths, span_mask, uniform_mask
from janusgen.model.layout import ar_view, masked_ranks, masked_view
from janusgen.model.transformer import Encoded, JanusTransformer


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """float32 log-softmax over the vocabulary, computed once per stream and shared by its terms."""
    return F.log_softmax(logits.float(), dim=-1)


def label_smoothed_ce(
    logp: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float
) -> torch.Tensor:
    """Mean over valid tokens of (1 - eps) * NLL + eps * mean_v(-log p_v), from log-probs `logp`."""
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -logp.mean(dim=-1)
    loss = (1.0 - eps) * nll + eps * smooth
    return _masked_mean(loss, valid)


def symmetric_kl(logp: torch.Tensor, logq: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid positions of ½ [KL(p‖q) + KL(q‖p)] = ½ Σ_v (p_v - q_v)(log p_v - log q_v),
    from float32 log-probs, with gradients through both sides."""
    kl = 0.5 * ((logp.exp() - logq.exp()) * (logp - logq)).sum(dim=-1)
    return _masked_mean(kl, valid)


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


class JanusObjective:
    """Computes the weighted loss of one batch; owns the generator that samples the masks."""

    def __init__(self, cfg: ObjectiveConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)
        self.needs_ar = cfg.ar_weight > 0 or cfg.kl_ar_nar > 0 or cfg.kl_ar_aux > 0
        self.needs_nar = cfg.nar_weight > 0 or cfg.kl_ar_nar > 0 or cfg.kl_nar_aux > 0
        self.needs_aux = cfg.aux_weight > 0 or cfg.kl_nar_aux > 0 or cfg.kl_ar_aux > 0

    def sample_mask(self, tgt: torch.Tensor, pad_id: int) -> torch.Tensor:
        if self.cfg.masking == "span":
            return span_mask(tgt, pad_id, self.cfg.mask_ratio, self.cfg.span_lambda, self.generator)
        if self.cfg.masking == "uniform":
            return uniform_mask(tgt, pad_id, self.generator)
        raise ValueError(f"unknown masking {self.cfg.masking!r}")

    def __call__(self, model: JanusTransformer, src: torch.Tensor, tgt: torch.Tensor) -> LossOutput:
        cfg, mcfg = self.cfg, model.cfg
        eps = cfg.label_smoothing
        terms: dict[str, torch.Tensor] = {}
        enc = model.encode(src)
        target_valid = tgt[:, 1:] != mcfg.pad_id
        masked_tokens = 0

        ar_logp = None
        if self.needs_ar:
            view = ar_view(tgt, mcfg.pad_id, mcfg.mask_id)
            hidden = model.decode(view, enc)
            ar_logp = log_probs(
                model.logits(hidden[:, view.num_content :])
            )  # (B, T-1, V): predicts tgt[:, 1:]
            terms["ar"] = label_smoothed_ce(ar_logp, tgt[:, 1:], target_valid, eps)

        if self.needs_nar or self.needs_aux:
            enc_nar = model.encode(src) if cfg.encode_per_view and self.needs_ar else enc
            masked = self.sample_mask(tgt, mcfg.pad_id)
            rank = masked_ranks(masked, cfg.random_order, self.generator)
            view = masked_view(tgt, masked, mcfg.pad_id, mcfg.mask_id, rank)
            hidden = model.decode(view, enc_nar)
            targets, valid = view.masked_targets, view.masked_valid
            masked_tokens = int(valid.sum())
            index = view.placeholder_rows[:, :, None].expand(-1, -1, hidden.shape[-1])
            nar_logp = log_probs(model.logits(hidden.gather(1, index)))  # (B, K, V)
            aux_logp = log_probs(model.logits(hidden[:, view.num_content :]))  # (B, K, V)
            if self.needs_nar:
                terms["nar"] = label_smoothed_ce(nar_logp, targets, valid, eps)
            if self.needs_aux:
                terms["aux"] = label_smoothed_ce(aux_logp, targets, valid, eps)
            if ar_logp is not None:
                # P_AR at the masked positions: query row m_j - 1 of the AR view predicts s_{m_j}
                at = (view.masked_positions - 1).clamp(min=0)[:, :, None].expand(-1, -1, ar_logp.shape[-1])
                ar_at_masked = ar_logp.gather(1, at)
                if cfg.kl_ar_nar > 0:
                    terms["kl_ar_nar"] = symmetric_kl(ar_at_masked, nar_logp, valid)
                if cfg.kl_ar_aux > 0:
                    terms["kl_ar_aux"] = symmetric_kl(ar_at_masked, aux_logp, valid)
            if cfg.kl_nar_aux > 0:
                terms["kl_nar_aux"] = symmetric_kl(nar_logp, aux_logp, valid)

        if cfg.length_weight > 0:
            enc_len = enc_nar if (self.needs_nar or self.needs_aux) else enc
            terms["length"] = self.length_loss(model, enc_len, tgt)

        weights = {
            "ar": cfg.ar_weight,
            "nar": cfg.nar_weight,
            "aux": cfg.aux_weight,
            "length": cfg.length_weight,
            "kl_ar_nar": cfg.kl_ar_nar,
            "kl_nar_aux": cfg.kl_nar_aux,
            "kl_ar_aux": cfg.kl_ar_aux,
        }
        loss = sum(weights[name] * value for name, value in terms.items())
        return LossOutput(
            loss, {k: v.detach() for k, v in terms.items()}, int(target_valid.sum()), masked_tokens
        )

    @staticmethod
    def length_loss(model: JanusTransformer, enc: Encoded, tgt: torch.Tensor) -> torch.Tensor:
        logits = model.length_logits(enc)
        return F.cross_entropy(
            logits.float(), length_targets(tgt, model.cfg.pad_id, model.cfg.max_target_length)
        )

    def reseed(self, seed: int) -> None:
        """The trainer reseeds per batch from the batch's identity, so masks do not depend on how many
        ranks there are, on gradient accumulation, or on where a run was resumed."""
        self.generator.manual_seed(seed)
