"""What AR and NAR decoding share: input checks, output length limits, token restrictions, length
normalisation, the result types, and teacher-forced AR scoring (used by self-reranking and tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from janusgen.model.config import ModelConfig
from janusgen.model.layout import DecoderView, decoder_sequence
from janusgen.model.transformer import DecoderCache, Encoded, JanusTransformer

if TYPE_CHECKING:
    from janusgen.decoding.speculative import SpeculativeStats


@dataclass
class Hypotheses:
    """One output per sentence, as tensors."""

    tokens: torch.Tensor  # (B, T) output ids without BOS/EOS, right-padded with pad_id
    lengths: torch.Tensor  # (B,) number of output tokens n
    log_prob: torch.Tensor  # (B,) sum of the log-probs the selecting model gave the output
    score: torch.Tensor  # (B,) the length-normalised score the output was selected by

    def token_lists(self) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths.tolist(), strict=True)]


@dataclass
class Decoded:
    """The public result: token-id lists (without BOS/EOS) and their scores."""

    tokens: list[list[int]]
    log_probs: list[float]
    scores: list[float]
    stats: SpeculativeStats | None = None  # speculative decoding: rounds and emitted tokens

    @staticmethod
    def of(hyps: Hypotheses, stats: SpeculativeStats | None = None) -> Decoded:
        return Decoded(hyps.token_lists(), hyps.log_prob.tolist(), hyps.score.tolist(), stats)


def check_inputs(model: JanusTransformer, src: torch.Tensor) -> Encoded:
    """Validate a source batch (B, S), drop all-padding columns and encode it; raise ValueError on
    misuse. The encoder knows whether any source is padded (no attention mask is needed if none is)."""
    if model.training:
        raise ValueError("call model.eval() before decoding: dropout would make the outputs random")
    if src.dim() != 2:
        raise ValueError(f"src must be a (batch, length) tensor of token ids, got shape {tuple(src.shape)}")
    cfg = model.cfg
    lengths = (src != cfg.pad_id).sum(dim=1)
    longest, shortest = torch.stack([lengths.max(), lengths.min()]).tolist() if src.shape[0] else (0, 0)
    if longest > cfg.max_positions:
        raise ValueError(
            f"a source has {longest} tokens (EOS included) but the model takes at most "
            f"max_positions={cfg.max_positions}; truncate it before decoding"
        )
    src = src[:, : max(longest, 1)]
    return model.encode(src, padded=shortest < src.shape[1])


def max_output_lengths(model: JanusTransformer, src: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """(B,) most output tokens (BOS/EOS excluded) per sentence: ⌊a·|x| + b⌋, where |x| counts the
    source tokens with EOS (as fairseq does), capped so that BOS + output + EOS fit in max_positions."""
    cfg = model.cfg
    src_len = (src != cfg.pad_id).sum(dim=1).double()
    limit = torch.floor(a * src_len + b).long()
    return limit.clamp(min=0, max=cfg.max_positions - 2)


@dataclass(frozen=True)
class DecoderPrefix:
    """What the AR decoder reads before the first token a search chooses (ModelConfig.decoder_start_id
    and forced_bos): BOS for janusgen's own models; a BART's start token </s>, then BOS when it is forced
    (Hugging Face's forced_bos_token_id) or chosen by the model."""

    tokens: tuple[int, ...]
    # how many of `tokens` the length normalisation counts as generated: a forced BOS, as Hugging Face's
    # and fairseq's searches count it
    counted: int
    # BOS may be the first chosen token (a start token without forced BOS): it is dropped from the output
    free_bos: bool


def ar_prefix(cfg: ModelConfig) -> DecoderPrefix:
    if cfg.decoder_start_id is None:
        return DecoderPrefix((cfg.bos_id,), 0, False)
    if cfg.forced_bos:
        return DecoderPrefix((cfg.decoder_start_id, cfg.bos_id), 1, False)
    return DecoderPrefix((cfg.decoder_start_id,), 0, True)


def nar_prefix(cfg: ModelConfig) -> tuple[int, ...]:
    """What the NAR view reads before the first output token, as training's masked view holds it."""
    return tuple(decoder_sequence(torch.tensor([[cfg.bos_id]]), cfg.decoder_start_id)[0].tolist())


def prime_cache(
    model: JanusTransformer, enc: Encoded, prefix: DecoderPrefix, cache: DecoderCache, width: int = 1
) -> None:
    """Put the content entries of all but the last prefix token into `cache` (one causal pass over them,
    for `width` decoder rows per row of `enc`), so that a search's first step reads the last one at its
    position."""
    n = len(prefix.tokens) - 1
    if n == 0:
        return
    rows, device = enc.states.shape[0] * width, enc.states.device
    tokens = torch.tensor(prefix.tokens[:-1], device=device).expand(rows, n)
    pos = torch.arange(n, device=device)
    visible = (pos[None, :] <= pos[:, None]).expand(rows, n, n)  # causal
    model.decode(DecoderView(tokens, pos.expand(rows, n), visible, n), enc, cache)


def drop_leading_bos(hyps: Hypotheses, bos_id: int, pad_id: int) -> Hypotheses:
    """The outputs without a BOS the model chose as its first token (`DecoderPrefix.free_bos`); the
    scores are those the search ranked by."""
    if hyps.tokens.shape[1] == 0:
        return hyps
    first = (hyps.tokens[:, 0] == bos_id) & (hyps.lengths > 0)  # (B,)
    shifted = torch.cat([hyps.tokens[:, 1:], torch.full_like(hyps.tokens[:, :1], pad_id)], dim=1)
    tokens = torch.where(first[:, None], shifted, hyps.tokens)
    return Hypotheses(tokens, hyps.lengths - first.long(), hyps.log_prob, hyps.score)


def banned_tokens(model: JanusTransformer, *ids: int) -> torch.Tensor:
    """(V,) additive mask: -inf at `ids`, 0 elsewhere; added to log-probs so these are never chosen
    (the log-prob of every allowed token is unchanged, so scores stay comparable to teacher forcing)."""
    ban = torch.zeros(model.cfg.vocab_size, device=model.embed.weight.device)
    ban[list(ids)] = -math.inf
    return ban


@dataclass(frozen=True)
class ArChoices:
    """What AR decoding may choose, the same for greedy, beam and speculative search: never pad, <unk>,
    BOS or [MASK], except that a BART whose BOS is not forced chooses it first, as it was trained to;
    only EOS at a sentence's length limit. Each is a (V,) additive mask for log-probs (banned_tokens)."""

    first: torch.Tensor  # for the first output token
    later: torch.Tensor  # for every other one
    eos_id: int  # the one token allowed at the length limit

    def apply_(
        self, logp: torch.Tensor, at_limit: torch.Tensor | None, first: torch.Tensor | bool
    ) -> torch.Tensor:
        """Add the mask to the log-probs `logp` (..., V) in place and return them, for rows at their length
        limit or not (`at_limit`, (..., 1); None: no row is) that predict the first output token or a
        later one (`first`: per row, broadcast like `at_limit`, or one flag for every row). In place, and
        at the limit by filling whole rows: no (rows, V) mask is built in a search step."""
        eos = None if at_limit is None else logp[..., self.eos_id].clone()  # no mask bans EOS
        if isinstance(first, bool):
            logp.add_(self.first if first else self.later)
        else:
            logp.add_(torch.where(first, self.first, self.later))
        if at_limit is not None:
            logp.masked_fill_(at_limit, -math.inf)
            logp[..., self.eos_id] = eos
        return logp


def ar_choices(model: JanusTransformer, prefix: DecoderPrefix) -> ArChoices:
    cfg = model.cfg
    later = banned_tokens(model, cfg.pad_id, cfg.unk_id, cfg.bos_id, cfg.mask_id)
    first = banned_tokens(model, cfg.pad_id, cfg.unk_id, cfg.mask_id) if prefix.free_bos else later
    return ArChoices(first, later, cfg.eos_id)


def ended_hypotheses(
    model: JanusTransformer,
    outputs: torch.Tensor,
    log_prob: torch.Tensor,
    prefix: DecoderPrefix,
    length_penalty: float,
) -> Hypotheses:
    """The hypotheses of AR outputs `outputs` (B, S) that each hold exactly one EOS (forced at the length
    limit, padding after it) and have the total log-probs `log_prob` (B,): EOS becomes padding, the
    score counts the output tokens, EOS and a forced BOS (fairseq's normalisation), and a BOS the model
    chose first (a BART without forced BOS) is dropped."""
    cfg = model.cfg
    is_eos = outputs == cfg.eos_id
    lengths = is_eos.int().argmax(dim=1)
    score = length_normalized(log_prob, lengths + 1 + prefix.counted, length_penalty)
    hyps = Hypotheses(outputs.masked_fill(is_eos, cfg.pad_id), lengths, log_prob, score)
    return drop_leading_bos(hyps, cfg.bos_id, cfg.pad_id) if prefix.free_bos else hyps


def length_normalized(log_prob: torch.Tensor, length: torch.Tensor, alpha: float) -> torch.Tensor:
    """fairseq-style length penalty: log_prob / length^alpha (alpha = 0: raw sum, 1: per-token mean)."""
    return log_prob / length.to(log_prob.dtype) ** alpha


@torch.inference_mode()
def teacher_forced_log_probs(model: JanusTransformer, enc: Encoded, tgt: torch.Tensor) -> torch.Tensor:
    """Log-probs P_AR(s_p | s_<p, x) of targets `tgt` (B, T) = BOS s_1 .. s_n EOS (right-padded),
    all positions in ONE parallel pass of the AR view: (B, T - 1), aligned with tgt[:, 1:], 0 at padding."""
    cfg = model.cfg
    seq = decoder_sequence(tgt, cfg.decoder_start_id)  # after a start token, BOS is predicted too
    logits = model.ar_logits(seq, enc).float()[:, seq.shape[1] - tgt.shape[1] :]  # (B, T-1, V)
    # log p = logit - logsumexp: no second (B, T-1, V) tensor for the log-softmax
    picked = logits.gather(-1, tgt[:, 1:, None]).squeeze(-1) - logits.logsumexp(dim=-1)  # (B, T-1)
    return picked.masked_fill(tgt[:, 1:] == cfg.pad_id, 0.0)


def with_bos_eos(model: JanusTransformer, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T) outputs (pad-padded) -> (B, T + 2) targets BOS s_1 .. s_n EOS, right-padded."""
    cfg = model.cfg
    b, t = tokens.shape
    pos = torch.arange(t + 2, device=tokens.device)[None]  # (1, T+2)
    pad = tokens.new_full((b, 1), cfg.pad_id)
    inner = torch.cat([pad, tokens, pad], dim=1)  # (B, T+2) outputs at positions 1..n
    tgt = torch.where(pos == 0, cfg.bos_id, inner)
    tgt = torch.where(pos == lengths[:, None] + 1, cfg.eos_id, tgt)
    return torch.where(pos > lengths[:, None] + 1, cfg.pad_id, tgt)
